"""The observer interfaces: what the server and the client report, with no dependency on any metrics library.

A :class:`ServerObserver` is given to a :class:`~rpcframework.server.reactor.ServiceReactor` (``observer=``); a
:class:`ClientObserver` to a client (``observer=`` option). Every method has a no-op default, so an observer
implements only what it needs. Observers are called on the serving threads: they must be quick and must not
raise (an exception from an observer is logged and ignored by :class:`FanOutServerObserver`/
:class:`FanOutClientObserver`; a single observer is trusted as it is).

Label values are bounded by construction: ``service`` is a service this server runs (or ``"unknown"``), ``method``
a method its handler exports (or ``"unknown"``); nothing a peer types becomes a label value.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

__all__ = [
    "UNKNOWN",
    "CallOutcome",
    "ClientCall",
    "ClientObserver",
    "FanOutClientObserver",
    "FanOutServerObserver",
    "HandshakeOutcome",
    "ObservedCall",
    "ServerCall",
    "ServerObserver",
]

logger = logging.getLogger(__name__)

#: The label value standing for any name a peer sent that this server does not serve.
UNKNOWN: Final = "unknown"


class CallOutcome(enum.StrEnum):
    """How a call ended, as a label value."""

    #: ``S_OK`` delivered.
    OK = "ok"
    #: ``S_ERROR`` delivered (the handler's, or a refusal of its arguments).
    S_ERROR = "s_error"
    #: Refused before running: authorization, an unknown service, or no worker free (``overloaded``).
    REFUSED = "refused"
    #: The service failed: the handler raised or returned garbage, or the result could not be delivered.
    ERROR = "error"


class HandshakeOutcome(enum.StrEnum):
    FULL = "full"
    RESUMED = "resumed"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ServerCall:
    """One call as the server's observers see it."""

    service: str
    method: str
    #: ``"RPC"`` or ``"FileTransfer"``.
    action: str
    #: ``host:port`` of the TCP peer, or ``None``.
    peer: str | None = None
    #: W3C trace context the client sent (``{"traceparent": ..., "tracestate": ...}``), if any.
    trace_context: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class ClientCall:
    """One call as the client's observers see it."""

    service: str
    method: str


class ServerObserver:
    """What a server reports. Subclass and override what you need; every method defaults to doing nothing."""

    def call_started(self, call: ServerCall) -> object:
        """A call starts running; the value returned comes back to :meth:`call_finished`."""
        return None

    def call_finished(
        self, call: ServerCall, token: object, outcome: CallOutcome, errno: int | None, seconds: float
    ) -> None:
        """A call ended (``errno``: the ``Errno`` of an error result)."""

    def call_refused(self, service: str, action: str, method: str, errno: int | None) -> None:
        """A proposal was refused before anything ran (labels already bounded)."""

    def overloaded(self, service: str) -> None:
        """A call found no room in the worker queue and was answered ``EOVERLOAD`` at once."""

    def queue_depth(self, service: str, depth: int) -> None:
        """Calls of ``service`` waiting for a worker (reported when a call is queued or taken)."""

    def connection_opened(self) -> None:
        """A connection completed its handshake (or was accepted, for ``dip://``)."""

    def connection_closed(self) -> None:
        """A connection reported by :meth:`connection_opened` closed."""

    def handshake(self, outcome: HandshakeOutcome, reason: str | None = None) -> None:
        """A TLS handshake ended; ``reason`` is a short bounded word for a failure (``timeout``, ``refused``...)."""

    def bans_in_force(self, count: int) -> None:
        """The number of temporary address bans now in force."""

    def transfer_finished(self, service: str, direction: str, outcome: CallOutcome, nbytes: int) -> None:
        """A file transfer ended after moving ``nbytes`` of file data."""

    def reloaded(self, what: str, ok: bool) -> None:
        """``what`` (``"configuration"`` or ``"credentials"``) was reloaded, successfully or not."""


class ClientObserver:
    """What a client reports. Subclass and override what you need; every method defaults to doing nothing."""

    def call_started(self, call: ClientCall) -> object:
        """A call starts; the value returned comes back to the other methods for this call."""
        return None

    def trace_context(self, token: object) -> Mapping[str, str] | None:
        """The W3C trace context to send to the server for this call (``None``: none)."""
        return None

    def call_finished(
        self, call: ClientCall, token: object, outcome: CallOutcome, url: str | None, seconds: float
    ) -> None:
        """A call ended; ``url`` is the URL that answered (``None`` when none did)."""

    def attempt_failed(self, call: ClientCall, url: str, retried: bool) -> None:
        """An attempt on ``url`` failed; ``retried`` when another attempt follows (a failover or a retry)."""

    def banned(self, call: ClientCall, url: str) -> None:
        """``url`` was banned for a while after a failure."""


class ObservedCall:
    """One client call in progress, for the client's observer: its token and the URL that answered."""

    __slots__ = ("call", "observer", "token", "url")

    def __init__(self, observer: ClientObserver, call: ClientCall) -> None:
        self.observer = observer
        self.call = call
        self.token: object = None
        self.url: str | None = None

    def failed(self, url: str, retried: bool) -> None:
        self.observer.attempt_failed(self.call, url, retried)

    def banned(self, url: str) -> None:
        self.observer.banned(self.call, url)

    def trace_context(self) -> Mapping[str, str] | None:
        return self.observer.trace_context(self.token)


def _safely(what: str, function: object, *args: object) -> object:
    try:
        return function(*args)  # type: ignore[operator]
    except Exception:
        logger.exception("observer %s failed; ignored", what)
        return None


class FanOutServerObserver(ServerObserver):
    """Several server observers as one (metrics and tracing together); a failing observer is logged and skipped."""

    def __init__(self, observers: Sequence[ServerObserver]) -> None:
        self.observers = tuple(observers)

    def call_started(self, call: ServerCall) -> object:
        return tuple(_safely("call_started", o.call_started, call) for o in self.observers)

    def call_finished(
        self, call: ServerCall, token: object, outcome: CallOutcome, errno: int | None, seconds: float
    ) -> None:
        tokens = token if isinstance(token, tuple) else (None,) * len(self.observers)
        for observer, own in zip(self.observers, tokens, strict=True):
            _safely("call_finished", observer.call_finished, call, own, outcome, errno, seconds)

    def call_refused(self, service: str, action: str, method: str, errno: int | None) -> None:
        for o in self.observers:
            _safely("call_refused", o.call_refused, service, action, method, errno)

    def overloaded(self, service: str) -> None:
        for o in self.observers:
            _safely("overloaded", o.overloaded, service)

    def queue_depth(self, service: str, depth: int) -> None:
        for o in self.observers:
            _safely("queue_depth", o.queue_depth, service, depth)

    def connection_opened(self) -> None:
        for o in self.observers:
            _safely("connection_opened", o.connection_opened)

    def connection_closed(self) -> None:
        for o in self.observers:
            _safely("connection_closed", o.connection_closed)

    def handshake(self, outcome: HandshakeOutcome, reason: str | None = None) -> None:
        for o in self.observers:
            _safely("handshake", o.handshake, outcome, reason)

    def bans_in_force(self, count: int) -> None:
        for o in self.observers:
            _safely("bans_in_force", o.bans_in_force, count)

    def transfer_finished(self, service: str, direction: str, outcome: CallOutcome, nbytes: int) -> None:
        for o in self.observers:
            _safely("transfer_finished", o.transfer_finished, service, direction, outcome, nbytes)

    def reloaded(self, what: str, ok: bool) -> None:
        for o in self.observers:
            _safely("reloaded", o.reloaded, what, ok)


class FanOutClientObserver(ClientObserver):
    """Several client observers as one; a failing observer is logged and skipped."""

    def __init__(self, observers: Sequence[ClientObserver]) -> None:
        self.observers = tuple(observers)

    def call_started(self, call: ClientCall) -> object:
        return tuple(_safely("call_started", o.call_started, call) for o in self.observers)

    def _tokens(self, token: object) -> tuple[object, ...]:
        return token if isinstance(token, tuple) else (None,) * len(self.observers)

    def trace_context(self, token: object) -> Mapping[str, str] | None:
        for observer, own in zip(self.observers, self._tokens(token), strict=True):
            context = _safely("trace_context", observer.trace_context, own)
            if context:
                return context  # type: ignore[return-value]
        return None

    def call_finished(
        self, call: ClientCall, token: object, outcome: CallOutcome, url: str | None, seconds: float
    ) -> None:
        for observer, own in zip(self.observers, self._tokens(token), strict=True):
            _safely("call_finished", observer.call_finished, call, own, outcome, url, seconds)

    def attempt_failed(self, call: ClientCall, url: str, retried: bool) -> None:
        for o in self.observers:
            _safely("attempt_failed", o.attempt_failed, call, url, retried)

    def banned(self, call: ClientCall, url: str) -> None:
        for o in self.observers:
            _safely("banned", o.banned, call, url)
