"""``AsyncClient``: ``await DispatcherClient().next_file(7, worker_id="w1")``.

The asyncio twin of :class:`~rpcframework.client.client.Client`, with the same shape and rules:

* a subclass names its service with ``serverURL``; ``AsyncClient(url=...)`` and ``setServer`` override it;
* attribute access returns a cached :class:`AsyncRemoteMethod`; names starting with ``_`` and the client's own
  public names (subclasses included) are never proxied; ``client.a.b()`` calls ``"a.b"``;
* awaiting a call returns the ``S_OK``/``S_ERROR`` envelope with DISET's ``rpcStub``; failures of the call itself
  come back as ``S_ERROR`` too;
* ``url=``, ``timeout=`` and ``rpc=`` are per-call settings (DIRAC's meaning); every other keyword is a remote
  keyword argument; ``with_options()`` and ``AsyncRemoteMethod.call`` send every keyword to the remote method;
* options are :class:`~rpcframework.client.options.ClientOptions` (unknown names raise), plus ``pool=``.

Where calls go: ``rpc=`` for one call, else ``transport=`` (an :class:`AsyncCallTarget`, a blocking
:class:`~rpcframework.client.interfaces.CallTarget` such as ``MockTransport``'s, or a ``Transport``), else one
:class:`~rpcframework.client.aio.rpcclient.AsyncRPCClient` per service, built on first use and shared by every task.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import replace
from types import CoroutineType
from typing import Any, ClassVar, Self

from rpcframework.client.aio.interfaces import AnyTarget, AsyncCallTarget
from rpcframework.client.aio.pool import AsyncPoolSettings
from rpcframework.client.client import _check_method_name, _public_names, _replayable_options
from rpcframework.client.interfaces import CallTarget, Transport
from rpcframework.client.options import CallSettings, ClientOptions, split_call_settings
from rpcframework.client.policy import Timeout
from rpcframework.client.stub import StubRecorder, parse_rpc_stub
from rpcframework.errors import ConfigurationError, RPCFrameworkError
from rpcframework.returnvalues import S_ERROR, DReturn, SErrorException, error_from_exception, isReturnStructure

__all__ = ["AsyncCallView", "AsyncClient", "AsyncRemoteMethod", "executeRPCStubAsync"]

logger = logging.getLogger(__name__)

_MAX_CACHED_METHODS = 1024


class AsyncRemoteMethod:
    """One remote method of one async client; calling it returns a coroutine that performs the call."""

    __slots__ = ("_rpc_client", "_rpc_name", "_rpc_owner", "_rpc_settings")

    def __init__(
        self,
        client: AsyncClient,
        name: str,
        settings: CallSettings | None = None,
        owner: AsyncCallView | None = None,
    ) -> None:
        self._rpc_client = client
        self._rpc_name = name
        self._rpc_settings = settings  # None: DIRAC mode (url/timeout/rpc keywords are per-call settings)
        self._rpc_owner = owner

    @property
    def name(self) -> str:
        return self._rpc_name

    def __getattr__(self, name: str) -> AsyncRemoteMethod:
        if name.startswith("_"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        dotted = f"{self._rpc_name}.{name}"
        if self._rpc_owner is not None:
            return self._rpc_owner._rpc_method(dotted)
        return self._rpc_client._rpc_method(dotted)

    def __call__(self, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, DReturn]:
        # The call's coroutine itself (one frame fewer per call than an ``async def`` around it); per-call settings
        # that are wrong (``timeout="soon"``) raise here, when the call is made.
        if self._rpc_settings is None:
            settings, remote_kwargs = split_call_settings(kwargs)
        else:
            settings, remote_kwargs = self._rpc_settings, kwargs
        return self._rpc_client._rpc_invoke(self._rpc_name, args, remote_kwargs, settings)

    async def call(
        self,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        url: str | None = None,
        timeout: float | Timeout | None = None,
        rpc: AnyTarget | None = None,
    ) -> DReturn:
        """Call with positional ``args`` and remote keyword ``kwargs`` kept apart from the per-call settings."""
        if isinstance(args, str | bytes) or not isinstance(args, Sequence):
            raise ConfigurationError(f"args must be a sequence of positional arguments, not {type(args).__name__}")
        override, _ = split_call_settings({"url": url, "timeout": timeout, "rpc": rpc})
        settings = (self._rpc_settings or CallSettings()).merged(override)
        return await self._rpc_client._rpc_invoke(self._rpc_name, tuple(args), dict(kwargs or {}), settings)

    def __repr__(self) -> str:
        return f"<AsyncRemoteMethod {self._rpc_name!r} of {self._rpc_client!r}>"


class AsyncCallView:
    """An async client seen with fixed per-call settings: every keyword goes to the remote method."""

    __slots__ = ("_rpc_client", "_rpc_methods", "_rpc_settings")

    def __init__(self, client: AsyncClient, settings: CallSettings) -> None:
        self._rpc_client = client
        self._rpc_settings = settings
        self._rpc_methods: dict[str, AsyncRemoteMethod] = {}

    def __getattr__(self, name: str) -> AsyncRemoteMethod:
        if name.startswith("_"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return self._rpc_method(name)

    def _rpc_method(self, name: str) -> AsyncRemoteMethod:
        method = self._rpc_methods.get(name)
        if method is None:
            method = AsyncRemoteMethod(self._rpc_client, name, self._rpc_settings, self)
            if len(self._rpc_methods) < _MAX_CACHED_METHODS:
                self._rpc_methods[name] = method
        return method

    def __dir__(self) -> list[str]:
        return sorted(self._rpc_client.remoteMethods)

    def __repr__(self) -> str:
        settings = self._rpc_settings
        return f"<AsyncCallView url={settings.url!r} timeout={settings.timeout!r} of {self._rpc_client!r}>"


class AsyncClient:
    """Base class for asyncio service clients: set :attr:`serverURL` (or pass ``url``) and await remote methods.

    ``transport`` injects the call machinery (see the module docstring); ``pool`` tunes the per-loop connection
    pools (:class:`~rpcframework.client.aio.pool.AsyncPoolSettings`); other keywords are
    :class:`~rpcframework.client.options.ClientOptions`. Build it once and share it between tasks (and loops).
    """

    serverURL: str | None = None
    remoteMethods: ClassVar[tuple[str, ...]] = ()
    _rpc_reserved: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._rpc_reserved = _public_names(cls)

    def __init__(
        self,
        url: str | None = None,
        *,
        transport: AsyncCallTarget | CallTarget | Transport | None = None,
        pool: AsyncPoolSettings | None = None,
        **options: Any,
    ) -> None:
        if url is not None:
            if not isinstance(url, str) or not url:
                raise ConfigurationError(f"url must be a non-empty string, not {url!r}")
            self.serverURL = url
        is_target = callable(getattr(transport, "call", None))
        if transport is not None and not is_target and not isinstance(transport, Transport):
            raise ConfigurationError(
                "transport must be a call target (with call()) or a Transport (with open_target()), "
                f"not {type(transport).__name__}"
            )
        if pool is not None and not isinstance(pool, AsyncPoolSettings):
            raise ConfigurationError(f"pool must be an AsyncPoolSettings, not {type(pool).__name__}")
        self._rpc_options = ClientOptions.build(options)
        self._rpc_transport = transport
        self._rpc_pool = pool
        self._rpc_lock = threading.Lock()
        self._rpc_methods: dict[str, AsyncRemoteMethod] = {}
        self._rpc_targets: dict[str, AnyTarget] = {}
        self._rpc_owned: list[AnyTarget] = []
        self._rpc_closed = False
        self._rpc_stubs = StubRecorder()

    # -- DIRAC-compatible API ------------------------------------------------------------------------------------

    @property
    def options(self) -> ClientOptions:
        return self._rpc_options

    @property
    def serviceURL(self) -> str | None:
        return self.serverURL

    @property
    def timeout(self) -> float | None:
        """The default call deadline in seconds."""
        return self._rpc_options.timeout.total

    def setServer(self, url: str) -> None:
        if not isinstance(url, str) or not url:
            raise ConfigurationError(f"url must be a non-empty string, not {url!r}")
        self.serverURL = url

    def getServer(self) -> str | None:
        return self.serverURL

    def setTimeout(self, timeout: float | Timeout | None) -> None:
        self._rpc_options = replace(self._rpc_options, timeout=Timeout.from_value(timeout))

    async def executeRPC(self, *args: Any, call: str | None = None, **kwargs: Any) -> DReturn:
        """``await executeRPC("ping")`` or DIRAC's ``executeRPC(*args, call="ping")``."""
        if call is None:
            if not args:
                raise TypeError("executeRPC() needs the remote method name as first argument (or call=)")
            method, args = args[0], args[1:]
        else:
            method = call
        settings, remote_kwargs = split_call_settings(kwargs)
        return await self._rpc_invoke(_check_method_name(method), args, remote_kwargs, settings)

    async def executeRPCStub(self, rpcStub: object) -> DReturn:
        """Replay an ``rpcStub`` (through this client when its options are the stub's)."""
        stub = parse_rpc_stub(rpcStub)
        options = _replayable_options(stub.options)
        timeout = options.get("timeout")
        if isinstance(timeout, int | float) and options == self._stub_options(timeout):
            return await self.remote(stub.method).call(stub.args, stub.kwargs, url=stub.service, timeout=timeout)
        return await executeRPCStubAsync(stub, transport=self._rpc_transport)

    def _getRPC(self, rpc: AnyTarget | None = None, url: str = "", timeout: float | None = None) -> AsyncCallView:
        return self.with_options(url=url or None, timeout=timeout, rpc=rpc)

    # -- our API -------------------------------------------------------------------------------------------------

    def with_options(
        self, *, url: str | None = None, timeout: float | Timeout | None = None, rpc: AnyTarget | None = None
    ) -> AsyncCallView:
        """A view whose calls use these settings and send every keyword argument to the remote method."""
        settings, _ = split_call_settings({"url": url, "timeout": timeout, "rpc": rpc})
        return AsyncCallView(self, settings)

    def remote(self, name: str) -> AsyncRemoteMethod:
        """The remote method ``name``, whatever it is called (also names the client reserves)."""
        return self._rpc_method(_check_method_name(name))

    async def aclose(self) -> None:
        """Release the connections this client opened; later calls return ``S_ERROR``."""
        for target in self._rpc_take_owned():
            closer = getattr(target, "aclose", None)
            if callable(closer):
                await closer()
                continue
            closer = getattr(target, "close", None)
            if callable(closer):
                closer()

    def close(self) -> None:
        """:meth:`aclose` for code that cannot await (the running loop's connections close at once)."""
        for target in self._rpc_take_owned():
            closer = getattr(target, "close", None)
            if callable(closer):
                closer()

    def _rpc_take_owned(self) -> list[AnyTarget]:
        with self._rpc_lock:
            owned, self._rpc_owned = self._rpc_owned, []
            self._rpc_targets.clear()
            self._rpc_closed = True
        return owned

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- proxying ------------------------------------------------------------------------------------------------

    def __getattr__(self, name: str) -> AsyncRemoteMethod:
        if name.startswith("_") or name in type(self)._rpc_reserved:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return self._rpc_method(name)

    def _rpc_method(self, name: str) -> AsyncRemoteMethod:
        try:
            cache = self.__dict__["_rpc_methods"]
        except KeyError:
            raise AttributeError(f"{name!r}: AsyncClient.__init__() has not run yet on this object") from None
        method: AsyncRemoteMethod | None = cache.get(name)
        if method is None:
            with self._rpc_lock:
                method = cache.get(name)
                if method is None:
                    method = AsyncRemoteMethod(self, name)
                    if len(cache) < _MAX_CACHED_METHODS:
                        cache[name] = method
        return method

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self.remoteMethods))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} service={self.serverURL!r} timeout={self.timeout!r}>"

    # -- the call ------------------------------------------------------------------------------------------------

    def _make_rpc(self, service: str) -> AnyTarget:
        """Build the networking client for ``service`` (once per service, with the client's lock held)."""
        from rpcframework.client.aio.rpcclient import AsyncRPCClient

        backends = self.__dict__.setdefault("_rpc_backends", {})
        return AsyncRPCClient(service, self._rpc_options, pool=self._rpc_pool, backends=backends)

    def _stub_options(self, timeout: float | None) -> dict[str, Any]:
        return self._rpc_stubs.options(self._rpc_options, timeout)

    def _rpc_target(self, service: str | None) -> AnyTarget:
        if not service:
            raise ConfigurationError(f"{type(self).__name__} has no service: set serverURL or pass url=")
        target = self._rpc_targets.get(service)
        if target is not None:
            return target
        with self._rpc_lock:
            if self._rpc_closed:
                raise ConfigurationError(f"{type(self).__name__} is closed")
            target = self._rpc_targets.get(service)
            if target is None:
                target = self._rpc_open_target(service)
                self._rpc_targets[service] = target
        return target

    def _rpc_open_target(self, service: str) -> AnyTarget:
        transport = self._rpc_transport
        if transport is None:
            target = self._make_rpc(service)
        elif isinstance(transport, Transport) and not callable(getattr(transport, "call", None)):
            target = transport.open_target(service, self._rpc_options)
        else:
            return transport  # type: ignore[return-value]  # a call target, shared and owned by the caller
        self._rpc_owned.append(target)
        return target

    async def _rpc_invoke(
        self, method: str, args: Sequence[Any], kwargs: Mapping[str, Any], settings: CallSettings
    ) -> DReturn:
        service = settings.url or self.serverURL
        timeout = settings.timeout if settings.timeout is not None else self._rpc_options.timeout.total
        args = tuple(args)
        stub = self._rpc_stubs.stub(service or "", method, args, kwargs, options=self._rpc_options, timeout=timeout)
        try:
            target: Any = settings.rpc
            if target is None:
                target = self._rpc_targets.get(service) if service else None
                if target is None:
                    target = self._rpc_target(service)
            result: object = target.call(method, args, dict(kwargs), timeout=timeout)
            if result.__class__ is CoroutineType or inspect.isawaitable(result):
                result = await result
        except (RPCFrameworkError, SErrorException) as exc:
            logger.debug("call %s to %s failed: %r", method, service, exc)
            result = error_from_exception(exc)
        plain_ok = type(result) is dict and result.get("OK") is True and "Value" in result
        if not plain_ok and not isReturnStructure(result):
            result = S_ERROR(f"malformed result from {service} for {method}: {type(result).__name__}")
        enveloped: dict[str, Any] = dict(result)  # type: ignore[call-overload]  # a checked envelope: a dict
        enveloped["rpcStub"] = stub
        return enveloped  # type: ignore[return-value]


AsyncClient._rpc_reserved = _public_names(AsyncClient)


async def executeRPCStubAsync(
    rpcStub: object, *, transport: AsyncCallTarget | CallTarget | Transport | None = None
) -> DReturn:
    """Replay a stored ``rpcStub`` from asyncio code (see :func:`~rpcframework.client.executeRPCStub`)."""
    stub = parse_rpc_stub(rpcStub)
    client = AsyncClient(stub.service, transport=transport, **_replayable_options(stub.options))
    try:
        return await client.remote(stub.method).call(stub.args, stub.kwargs)
    finally:
        await client.aclose()
