"""``MockTransport``: test a ``Client`` subclass without a server (httpx's ``MockTransport``, for DISET calls).

Two ways to answer calls::

    # 1. a function (service, method, args, kwargs) -> S_OK/S_ERROR
    transport = MockTransport(lambda service, method, args, kwargs: S_OK(args))

    # 2. your RequestHandler, dispatched in-process as the server would (argument checks, authorization rules
    #    against a fake caller, a fresh handler instance per call, initializeHandler once)
    transport = MockTransport(DispatcherHandler, caller=Caller(dn=..., username="alice", group="dirac_user"))

    client = DispatcherClient(transport=transport)
    assert client.next_file(7, "worker-1")["OK"]
    assert transport.calls[-1].method == "next_file"

``encoding`` (e.g. ``Encoding.JSON``) sends arguments and results through that codec first, so a test sees what
the wire does to them (tuples become lists with JSON); ``None`` (the default) passes them untouched.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rpcframework.codec import Encoding, decode, encode
from rpcframework.errors import ConfigurationError, RPCFrameworkError
from rpcframework.returnvalues import DReturn, error_from_exception

if TYPE_CHECKING:
    from rpcframework.client.options import ClientOptions
    from rpcframework.server import RequestHandler

__all__ = ["MockCall", "MockTarget", "MockTransport", "default_caller"]

MockHandler = Callable[[str, str, tuple[Any, ...], dict[str, Any]], DReturn]


def default_caller() -> Any:
    """The caller a handler sees unless you pass ``caller=``: a registered user ``test-user`` with ``NormalUser``."""
    from rpcframework.security.authz import Caller

    return Caller(
        dn="/DC=org/DC=rpcframework/OU=Users/CN=test-user",
        username="test-user",
        group="test_user",
        properties=("NormalUser",),
        vo="test",
    )


class _Default:
    """Marks "no caller given" (``None`` already means an anonymous caller)."""

    def __repr__(self) -> str:
        return "<default caller>"


_DEFAULT = _Default()


@dataclass(frozen=True)
class MockCall:
    """One recorded call."""

    service: str
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    timeout: float | None


class MockTransport:
    """A :class:`~rpcframework.client.interfaces.Transport` answering from a function or a ``RequestHandler``.

    ``caller`` is the identity a handler sees: an ``authz.Caller``, a DIRAC ``credDict`` mapping, or ``None`` for
    an anonymous ``dip://`` peer (default: :func:`default_caller`). ``authorize`` applies the handler's ``auth_``
    rules to an ``authz.Caller`` as the server does (deny by default). Calls are recorded in :attr:`calls`.
    """

    def __init__(
        self,
        handler: MockHandler | type[RequestHandler],
        *,
        caller: Any = _DEFAULT,
        authorize: bool = True,
        encoding: Encoding | None = None,
        service_info: Mapping[str, Any] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self.calls: list[MockCall] = []
        self.encoding = encoding
        self._function: MockHandler | None = None
        self._handler_cls: type[RequestHandler] | None = None
        self._caller = default_caller() if caller is _DEFAULT else _as_caller(caller)
        self._authorize = authorize
        self._service_info = service_info
        self._initialized: set[str] = set()
        if isinstance(handler, type):
            from rpcframework.server import RequestHandler

            if not issubclass(handler, RequestHandler):
                raise ConfigurationError(f"{handler.__qualname__} is not a RequestHandler subclass")
            self._handler_cls = handler
        elif callable(handler):
            self._function = handler
        else:
            raise ConfigurationError(f"MockTransport needs a function or a RequestHandler class, not {handler!r}")

    def open_target(self, service: str, options: ClientOptions) -> MockTarget:
        return MockTarget(self, service)

    def close(self) -> None:
        """Nothing to release; present so a transport can be used like the networking one."""

    def reset(self) -> None:
        """Forget the recorded calls."""
        with self._lock:
            self.calls.clear()

    def _record(self, call: MockCall) -> None:
        with self._lock:
            self.calls.append(call)

    def _roundtrip(self, value: Any) -> Any:
        if self.encoding is None:
            return value
        return decode(encode(value, self.encoding), self.encoding)[0]

    def _answer(self, call: MockCall) -> DReturn:
        args = tuple(self._roundtrip(list(call.args)))
        kwargs = self._roundtrip(call.kwargs) if call.kwargs else {}
        if self._function is not None:
            result = self._function(call.service, call.method, args, kwargs)
        else:
            result = self._dispatch(call, args, kwargs)
        return self._roundtrip(result)  # type: ignore[no-any-return]

    def _dispatch(self, call: MockCall, args: tuple[Any, ...], kwargs: dict[str, Any]) -> DReturn:
        from rpcframework.server import RequestContext, dispatch, make_service_info

        handler_cls = self._handler_cls
        assert handler_cls is not None
        info = self._service_info or make_service_info(_service_name(call.service))
        self._initialize(handler_cls, call.service, info)
        refusal = self._check_authorization(handler_cls, call.method)
        if refusal is not None:
            return refusal
        context = RequestContext(
            caller=self._caller,
            peer_address=("127.0.0.1", 0),
            service_info=info,
            action=("RPC", call.method),
            client_version="mock",
            deadline=None if call.timeout is None else time.monotonic() + call.timeout,
            may_call=lambda action, name: self._may_call(handler_cls, action, name),
        )
        return dispatch(handler_cls, call.method, list(args), kwargs or None, context)

    def _initialize(self, handler_cls: type[RequestHandler], service: str, info: Mapping[str, Any]) -> None:
        from rpcframework.server import initialize_handler_class

        with self._lock:
            if service in self._initialized:
                return
            result = initialize_handler_class(handler_cls, info)
            if not result["OK"]:
                raise ConfigurationError(f"{handler_cls.__qualname__}: {result['Message']}")
            self._initialized.add(service)

    def _may_call(self, handler_cls: type[RequestHandler], action: str, name: str) -> bool:
        """What ``describe`` and the "did you mean" suggestions list: the RPC methods this mock would admit."""
        if action != "RPC" or name not in handler_cls.method_table().methods:
            return False
        return self._check_authorization(handler_cls, name) is None

    def _check_authorization(self, handler_cls: type[RequestHandler], method: str) -> DReturn | None:
        from rpcframework.security.authz import Caller, authorize

        if not self._authorize or not isinstance(self._caller, Caller):
            return None
        if method not in handler_cls.method_table().methods:
            return None  # dispatch answers "Unknown method"
        try:
            authorize(self._caller, handler_cls.method_table().auth_rule("RPC", method), method=method)
        except RPCFrameworkError as exc:
            return error_from_exception(exc)
        return None


def _as_caller(caller: Any) -> Any:
    """``None`` is an anonymous peer, exactly as the real server resolves one, so ``auth_`` rules still apply."""
    if caller is None:
        from rpcframework.security.authz import anonymous_caller

        return anonymous_caller()
    return caller


def _service_name(service: str) -> str:
    # "dips://host:port/System/Component" -> "System/Component"; a bare name stays as it is.
    if "://" in service:
        path = service.split("://", 1)[1].partition("/")[2]
        return path.split(",")[0].strip() or service
    return service


class MockTarget:
    """The :class:`~rpcframework.client.interfaces.CallTarget` a :class:`MockTransport` opens for one service."""

    def __init__(self, transport: MockTransport, service: str) -> None:
        self.transport = transport
        self.service = service

    def call(self, method: str, args: tuple[Any, ...], kwargs: Mapping[str, Any], *, timeout: float | None) -> DReturn:
        call = MockCall(self.service, method, tuple(args), dict(kwargs), timeout)
        self.transport._record(call)
        return self.transport._answer(call)

    def close(self) -> None:
        """Nothing to release."""
