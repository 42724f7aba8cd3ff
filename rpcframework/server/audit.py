"""One structured audit record per call, on the ``rpcframework.audit`` logger.

Each record's message is one readable line; the same facts are attributes of the ``LogRecord`` (``extra=``), so a
JSON formatter can emit them as fields without parsing text:

=================== ===========================================================================================
``audit_event``     ``"call"`` (a call ran or was answered) or ``"refused"`` (its proposal was refused)
``utc_time``        ISO 8601 UTC time the record was made (``2025-01-31T12:00:00.123456+00:00``)
``peer_address``    ``host:port`` of the TCP peer (the real peer, also under delegation)
``peer_dn``         DN of the TLS peer's identity (``None`` for ``dip://``)
``delegated_dn``    DN the peer acted for (a trusted host delegating), else ``None``
``delegated_group`` group of the delegated user, else ``None``
``username``        the resolved caller's name (``anonymous`` when it has no identity)
``group``           the resolved caller's group
``service``         ``System/Component``
``action``          ``RPC`` or ``FileTransfer``
``method``          method name (or transfer direction)
``outcome``         ``ok``, ``error``, ``refused``, or ``undelivered`` (the caller left before the result)
``errno``           DIRAC ``Errno`` of an error result, else ``None``
``duration_ms``     time spent serving the call
=================== ===========================================================================================

Nothing is built unless the logger is enabled for INFO, so a server that does not audit pays one level check.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["AUDIT_LOGGER_NAME", "audit_call", "audit_logger"]

AUDIT_LOGGER_NAME: Final = "rpcframework.audit"
audit_logger = logging.getLogger(AUDIT_LOGGER_NAME)


def _caller_fields(caller: Any) -> tuple[str | None, str | None, str | None, str | None]:
    """(username, group, delegated DN, delegated group) of a ``Caller``, a credDict mapping, or ``None``."""
    if caller is None:
        return None, None, None, None
    if isinstance(caller, Mapping):
        delegated = caller.get("delegatedFrom")
        dn, group = caller.get("DN"), caller.get("group")
        return caller.get("username"), group, dn if delegated else None, group if delegated else None
    delegated = getattr(caller, "delegated_from", None)
    dn, group = getattr(caller, "dn", None), getattr(caller, "group", None)
    return getattr(caller, "username", None), group, dn if delegated else None, group if delegated else None


def audit_call(
    *,
    peer_address: tuple[str, int] | None,
    peer_dn: str | None,
    caller: Any,
    service: str,
    action: str,
    method: str,
    result: Mapping[str, Any] | None,
    duration: float,
    delivered: bool = True,
    refused: bool = False,
) -> None:
    """Log one audit record (``duration`` in seconds; ``result`` is the envelope sent, if any)."""
    if not audit_logger.isEnabledFor(logging.INFO):
        return
    username, group, delegated_dn, delegated_group = _caller_fields(caller)
    ok = bool(result and result.get("OK"))
    if refused:
        outcome = "refused"
    elif not delivered:
        outcome = "undelivered"
    else:
        outcome = "ok" if ok else "error"
    errno = None if ok or result is None else result.get("Errno")
    where = f"{peer_address[0]}:{peer_address[1]}" if peer_address else None
    fields = {
        "audit_event": "refused" if refused else "call",
        "utc_time": datetime.datetime.now(datetime.UTC).isoformat(),
        "peer_address": where,
        "peer_dn": peer_dn,
        "delegated_dn": delegated_dn,
        "delegated_group": delegated_group,
        "username": username,
        "group": group,
        "service": service,
        "action": action,
        "method": method,
        "outcome": outcome,
        "errno": errno,
        "duration_ms": round(duration * 1000.0, 3),
    }
    on_behalf = f" for {delegated_dn} ({delegated_group})" if delegated_dn else ""
    audit_logger.info(
        "%s %s/%s from %s (%s)%s: %s in %.2f ms",
        service,
        action,
        method,
        where,
        peer_dn or "no certificate",
        on_behalf,
        outcome,
        fields["duration_ms"],
        extra=fields,
    )
