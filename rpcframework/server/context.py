"""What a handler knows about the request it is serving.

The reactor builds one :class:`RequestContext` per call; :func:`~rpcframework.server.dispatch.dispatch` hands it to
the fresh handler instance and also publishes it in a :class:`contextvars.ContextVar`, so helper code deep inside a
handler can reach it with :func:`current_request` without threading it through every call. The variable is set
just before the handler is created and reset when the call returns or raises, so nothing leaks between requests
that share a worker thread.
"""

from __future__ import annotations

import contextlib
import datetime
import time
import types
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, runtime_checkable

from rpcframework.security.authz import VISITOR_GROUP
from rpcframework.security.dirac_chain import X509Chain

#: Credential keys that never leave the server (a certificate chain is an object, not data for a peer).
PRIVATE_CREDENTIAL_KEYS = frozenset({"x509Chain", "chain"})

_EMPTY: Mapping[str, Any] = types.MappingProxyType({})

# The one piece of module-level state the design allows: the request being served in this context.
_current_request: ContextVar[RequestContext | None] = ContextVar("rpcframework_current_request", default=None)


@runtime_checkable
class SupportsCredentials(Protocol):
    """A caller identity that can describe itself the way DIRAC's ``credDict`` does.

    ``security.authz.Caller`` implements this; the keys are DIRAC's (``DN``, ``username``, ``group``,
    ``properties``, ``VO``, ...).
    """

    def to_cred_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class RequestContext:
    """One request, as the reactor saw it. Immutable: a handler reads it, never changes it.

    ``caller`` is the authenticated (and authorized) identity: an object with ``to_cred_dict()`` (``authz.Caller``),
    a plain mapping in DIRAC ``credDict`` form, or ``None`` for a ``dip://`` peer without a certificate.
    ``peer_identity`` is the TLS peer as read from its chain (``x509.PeerIdentity``: ``dn``, ``subject``,
    ``issuer``, ``is_proxy``, ``is_limited_proxy``, ``chain``, ``seconds_left()``); ``extra_credentials`` is the
    proposal's wire value (``""``, ``"hosts"`` or ``[dn, group]``).
    ``deadline`` is a :func:`time.monotonic` timestamp (``None``: the caller set none). ``is_connected`` is supplied
    by the reactor and answers whether the caller's connection is still open.
    ``may_call`` answers whether this caller may call another method of the service (``None``: nothing is known).
    """

    caller: SupportsCredentials | Mapping[str, Any] | None = None
    peer_identity: Any = None
    extra_credentials: Any = ""
    peer_address: tuple[str, int] | None = None
    service_info: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    action: tuple[str, str] = ("RPC", "")
    client_version: str = ""
    client_setup: str = ""
    client_vo: str = ""
    deadline: float | None = None
    is_connected: Callable[[], bool] | None = None
    may_call: Callable[[str, str], bool] | None = None
    #: The W3C trace context the client sent with this call (our extension), else ``None``.
    trace_context: Mapping[str, str] | None = None

    def credentials(self) -> dict[str, Any]:
        """A fresh DIRAC-style ``credDict``: the peer's certificate facts, then the resolved caller's keys.

        ``{}`` for an anonymous ``dip://`` peer, as in DIRAC. Built on demand, so calls that never ask pay nothing.
        """
        caller = self.caller
        resolved: Mapping[str, Any] = {}
        if isinstance(caller, Mapping):
            resolved = caller
        elif caller is not None:
            resolved = caller.to_cred_dict()
        group = resolved.get("group")
        # The chain object answers only a group the service checked: none for an anonymous caller.
        credentials = _peer_credentials(self.peer_identity, group if group != VISITOR_GROUP else None)
        credentials.update(resolved)
        if credentials and self.extra_credentials:
            credentials.setdefault("extraCredentials", self.extra_credentials)
        return credentials

    def time_remaining(self) -> float | None:
        """Seconds left before the caller's deadline (never negative), or ``None`` without a deadline."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    def caller_connected(self) -> bool:
        """Whether the caller is still there; ``True`` when the reactor cannot tell."""
        return True if self.is_connected is None else bool(self.is_connected())


def _peer_credentials(peer: Any, group: str | None) -> dict[str, Any]:
    if peer is None:
        return {}
    credentials: dict[str, Any] = {
        "DN": peer.dn,
        "subject": peer.subject,
        "issuer": peer.issuer,
        "isProxy": peer.is_proxy,
        "isLimitedProxy": peer.is_limited_proxy,
        # DIRAC's chain object over the verified certificates (read-only; .certificates for the raw ones).
        "x509Chain": X509Chain(peer.chain, group),
    }
    seconds_left = getattr(peer, "seconds_left", None)
    if callable(seconds_left):
        credentials["secondsLeft"] = int(seconds_left())
    return credentials


def make_service_info(
    service_name: str,
    *,
    url: str = "",
    section_path: str = "",
    valid_names: tuple[str, ...] = (),
    start_time: datetime.datetime | None = None,
    **extra: Any,
) -> Mapping[str, Any]:
    """Build the read-only ``serviceInfo`` mapping handed to ``initializeHandler``, with DIRAC's key names.

    ``start_time`` is a naive UTC datetime as DIRAC uses (default: now). ``extra`` adds keys of your own.
    """
    started = start_time or datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    info: dict[str, Any] = {
        "serviceName": service_name,
        "serviceSectionPath": section_path,
        "URL": url,
        "validNames": list(valid_names or (service_name,)),
        "serviceStartTime": started,
        **extra,
    }
    return types.MappingProxyType(info)


def current_request() -> RequestContext:
    """The request being served by this thread/task; raises :class:`LookupError` outside a handler call."""
    context = _current_request.get()
    if context is None:
        raise LookupError("no request is being served in this context")
    return context


def get_current_request() -> RequestContext | None:
    """The request being served, or ``None`` outside a handler call."""
    return _current_request.get()


@contextlib.contextmanager
def request_scope(context: RequestContext) -> Iterator[RequestContext]:
    """Publish ``context`` as the current request for the duration of the block (reset even on error)."""
    token = _current_request.set(context)
    try:
        yield context
    finally:
        _current_request.reset(token)


#: Low-level (the per-call path): set the current request and return the token for :func:`reset_current_request`.
#: The variable's own bound methods, so a call costs no Python frame.
set_current_request: Final[Callable[[RequestContext | None], Token[RequestContext | None]]] = _current_request.set
#: Low-level: undo :func:`set_current_request`.
reset_current_request: Final[Callable[[Token[RequestContext | None]], None]] = _current_request.reset
