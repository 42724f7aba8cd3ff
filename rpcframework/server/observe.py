"""What the reactor tells a :class:`~rpcframework.observability.events.ServerObserver` about connections."""

from __future__ import annotations

from typing import Final

from rpcframework.observability.events import HandshakeOutcome, ServerObserver
from rpcframework.server.connection import Channel

__all__ = ["failure_reason", "observe_connection"]

#: Words in a handshake error and the label they map to, first match wins.
_FAILURE_WORDS: Final = (
    ("http request", "protocol"),
    ("unknown protocol", "protocol"),
    ("wrong version", "protocol"),
    ("expired", "expired"),
    ("revoked", "revoked"),
    ("timed out", "timeout"),
    ("timeout", "timeout"),
    ("verify", "certificate"),
    ("certificate", "certificate"),
    ("proxy", "certificate"),
    ("closed", "closed"),
    ("eof", "closed"),
    ("reset", "closed"),
    ("protocol", "protocol"),
    ("speaking tls", "protocol"),
)


def observe_connection(observer: ServerObserver, channel: Channel) -> None:
    """Report a handshaken connection (full or resumed) and, through its close callback, its end."""
    reused = getattr(channel.stream, "session_reused", None)
    resumed = bool(reused()) if callable(reused) else False
    observer.handshake(HandshakeOutcome.RESUMED if resumed else HandshakeOutcome.FULL)
    observer.connection_opened()
    release = channel.on_close

    def closed() -> None:
        observer.connection_closed()
        if release is not None:
            release()

    channel.on_close = closed


def failure_reason(exc: BaseException) -> str:
    """A bounded word for why a handshake failed (a label value; the full text goes to the log)."""
    text = str(exc).lower()
    for word, reason in _FAILURE_WORDS:
        if word in text:
            return reason
    return "other"
