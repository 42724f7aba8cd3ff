"""What the reactor tells a :class:`~rpcframework.observability.events.ServerObserver` about connections."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Final

from rpcframework.config.store import ConfigStore
from rpcframework.observability.events import UNKNOWN, HandshakeOutcome, ServerObserver
from rpcframework.protocol.messages import ActionType, Proposal
from rpcframework.returnvalues import DReturn
from rpcframework.server.service import Service, classify_result
from rpcframework.transports.contexts import ContextCache

if TYPE_CHECKING:
    from rpcframework.server.connection import Channel

__all__ = ["failure_reason", "observe_connection", "observe_refusal", "observe_reloads"]

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


def observe_reloads(observer: ServerObserver, stores: Iterable[object], caches: Iterable[object]) -> Callable[[], None]:
    """Report configuration reloads of ``stores`` (ConfigStore) and credential reloads of server contexts in
    ``caches`` (a back end's ContextCache) to ``observer``; returns a function that stops reporting."""
    undo: list[Callable[[], None]] = []
    for store in {id(s): s for s in stores if isinstance(s, ConfigStore)}.values():
        undo.append(store.subscribe_outcomes(lambda ok: observer.reloaded("configuration", ok)))
    for cache in {id(c): c for c in caches if isinstance(c, ContextCache)}.values():

        def credentials(server_side: bool, ok: bool) -> None:
            if server_side:
                observer.reloaded("credentials", ok)

        undo.append(cache.subscribe_reloads(credentials))

    def stop() -> None:
        for step in undo:
            step()

    return stop


def observe_refusal(services: Mapping[str, Service], proposal: Proposal, error: DReturn) -> None:
    """Report a refused proposal; labels are our own names only (a peer's unknown method is ``unknown``)."""
    service = services.get(proposal.service)
    observer = (service or next(iter(services.values()))).observer
    if observer is None:
        return
    errno = classify_result(error)[1]
    action = proposal.action_type
    if service is None:
        observer.call_refused(UNKNOWN, action.value, UNKNOWN, errno)
    elif action is ActionType.RPC:
        observer.call_refused(service.name, "RPC", service.method_label(proposal.action_name), errno)
    else:
        direction = proposal.action_name if proposal.action_name in service.table.transfers else UNKNOWN
        observer.call_refused(service.name, action.value, direction, errno)
