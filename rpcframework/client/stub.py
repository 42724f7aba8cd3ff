"""``rpcStub``: the replayable description of a call that DISET attaches to every result.

DISET's shape, kept exactly so DIRAC code that stores and replays stubs (the Request Management System's
``ForwardDISET`` operation stores them DEncoded) keeps working::

    ((service, options), method, args)

``service`` is what the caller named (``"System/Component"`` or a full URL), ``options`` a dict of client keyword
options (DISET: the client's kwargs without ``useCertificates``), ``method`` the remote method name and ``args``
the positional arguments as a tuple. After a JSON round trip the tuples are lists; :func:`parse_rpc_stub` accepts
both. Our only addition: when the call had remote keyword arguments, a fourth element holds them as a dict. DIRAC
reads a stub by index ``[0][0]``, ``[0][1]``, ``[1]``, ``[2]`` and never sees it; without keyword arguments the stub
is exactly DISET's 3-tuple.

:class:`StubRecorder` is the one place a call's stub is made: ``Client``, ``RPCClient`` (DIRAC-style proxying) and
their asyncio twins each hold one. Like DISET, which records ``ThreadConfig``'s identity among the client's
options, it records a ``delegate()`` block in force when the call is made, so a replay acts for the same user.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from rpcframework.errors import ConfigurationError
from rpcframework.security.delegation import current_delegation

if TYPE_CHECKING:
    from rpcframework.client.options import ClientOptions

RPCStubValue = tuple[Any, ...]


class RPCStub(NamedTuple):
    """A parsed ``rpcStub``."""

    service: str
    options: dict[str, Any]
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def to_wire(self) -> RPCStubValue:
        """The DISET tuple form (with the kwargs element only when there are keyword arguments)."""
        return build_rpc_stub(self.service, self.options, self.method, self.args, self.kwargs)


def build_rpc_stub(
    service: str,
    options: Mapping[str, Any],
    method: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any] | None = None,
) -> RPCStubValue:
    """Build the stub DISET attaches to results: ``((service, options), method, args[, kwargs])``."""
    base: RPCStubValue = ((service, dict(options)), method, tuple(args))
    if kwargs:
        return (*base, dict(kwargs))
    return base


class StubRecorder:
    """Makes the ``rpcStub`` of each call of one client: the one place a stub is built.

    The recorded options are :meth:`ClientOptions.stub_options` (no credentials, as DISET) for the call's timeout,
    plus the delegation in force in the calling context unless the options name ``delegatedDN`` themselves. The
    options part is cached for the last (options, timeout): options are immutable (``setTimeout`` swaps the object)
    and the dict is only read (:func:`build_rpc_stub` copies it into each stub). Safe to share between threads.
    """

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: tuple[ClientOptions, float | None, dict[str, Any]] | None = None

    def options(self, options: ClientOptions, timeout: float | None) -> dict[str, Any]:
        """The options a stub of a call made now, with ``timeout``, records (read-only: do not modify)."""
        last = self._last
        if last is not None and last[0] is options and last[1] == timeout:
            recorded = last[2]
        else:
            recorded = options.stub_options(timeout)
            self._last = (options, timeout, recorded)  # one reference swap: threads see the old or the new
        if options.delegatedDN is None:
            delegation = current_delegation()
            if delegation is not None:
                recorded = {**recorded, "delegatedDN": delegation.dn}
                if delegation.group:
                    recorded["delegatedGroup"] = delegation.group
        return recorded

    def stub(
        self,
        service: str,
        method: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any] | None = None,
        *,
        options: ClientOptions,
        timeout: float | None,
    ) -> RPCStubValue:
        """The stub of a call of ``method`` on ``service`` made now with ``options`` and ``timeout``."""
        return build_rpc_stub(service, self.options(options, timeout), method, args, kwargs)


def parse_rpc_stub(stub: object) -> RPCStub:
    """Validate a stub (tuple or list form, e.g. after JSON or DEncode) and return its parts.

    Raises :class:`ConfigurationError` naming what is wrong; a stub is data from storage, so check everything.
    """
    if isinstance(stub, RPCStub):
        return stub
    if not isinstance(stub, list | tuple) or len(stub) not in (3, 4):
        raise ConfigurationError(f"an rpcStub is ((service, options), method, args); got {_short(stub)}")
    target, method, args = stub[0], stub[1], stub[2]
    if not isinstance(target, list | tuple) or len(target) != 2:
        raise ConfigurationError(f"rpcStub[0] must be (service, options); got {_short(target)}")
    service, options = target
    if not isinstance(service, str) or not service:
        raise ConfigurationError(f"rpcStub service must be a non-empty string; got {_short(service)}")
    if not isinstance(options, dict) or not all(isinstance(key, str) for key in options):
        raise ConfigurationError(f"rpcStub options must be a dict with string keys; got {_short(options)}")
    if not isinstance(method, str) or not method:
        raise ConfigurationError(f"rpcStub method must be a non-empty string; got {_short(method)}")
    if not isinstance(args, list | tuple):
        raise ConfigurationError(f"rpcStub args must be a list or tuple; got {_short(args)}")
    kwargs: object = stub[3] if len(stub) == 4 else {}
    if not isinstance(kwargs, dict) or not all(isinstance(key, str) for key in kwargs):
        raise ConfigurationError(f"rpcStub keyword arguments must be a dict with string keys; got {_short(kwargs)}")
    return RPCStub(service, dict(options), method, tuple(args), dict(kwargs))


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
