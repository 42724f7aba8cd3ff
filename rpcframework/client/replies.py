"""What a caller gets from a server's reply: DIRAC's envelope keys only, with an integer ``Errno``.

A reply is checked by the protocol machine to be ``S_OK`` (with ``Value``) or ``S_ERROR`` (with a ``str``
``Message``), but a server may attach more: DIRAC sends its server stack (``CallStack``) with refusals and may leave
``ExecInfo`` on errors, and a hostile server can send any key or an ``Errno`` that is not an integer. None of it
reaches a caller: :func:`normalize_reply` keeps ``OK``/``Value`` or ``OK``/``Errno``/``Message`` (the client adds
``rpcStub`` afterwards, as DISET does).

One extra key means something to the client itself: ``RetryAfter`` on an ``EOVERLOAD`` refusal, which our server
sets only when it ran nothing (:func:`overload_retry_after`). It is read before the reply is normalised.
"""

from __future__ import annotations

import math
import time
from typing import Any, Final, Protocol

from rpcframework.errors import ProtocolError, RemoteError, ServiceOverloaded
from rpcframework.protocol.events import CallResult, ProposalRefused
from rpcframework.protocol.messages import RETRY_AFTER_KEY
from rpcframework.returnvalues import EOVERLOAD, DErrorReturn, DReturn

__all__ = ["normalize_reply", "overload_retry_after", "refusal_error", "result_or_overload"]

# An Errno outside a C int is nobody's errno.
_ERRNO_MIN: Final = -(2**31)
_ERRNO_MAX: Final = 2**31 - 1
_MAX_ERRNO_DIGITS: Final = 11


def normalize_errno(value: object) -> int:
    """An ``Errno`` as an ``int``: integral numbers and decimal strings are converted, anything else is 0."""
    number: int | None = None
    if isinstance(value, bool):
        number = None  # True is not an error number
    elif isinstance(value, int) or (isinstance(value, float) and math.isfinite(value) and value.is_integer()):
        number = int(value)
    elif isinstance(value, str) and len(value) <= _MAX_ERRNO_DIGITS:
        text = value.strip()
        if text.lstrip("-").isdigit() and text.isascii():
            number = int(text)
    if number is None or not _ERRNO_MIN <= number <= _ERRNO_MAX:
        return 0
    return number


def normalize_reply(reply: DReturn) -> DReturn:
    """``reply`` with only DIRAC's envelope keys and an integer ``Errno`` (the same object when already clean)."""
    if reply["OK"]:
        if len(reply) == 2:
            return reply  # the common case: {"OK": True, "Value": ...}
        return {"OK": True, "Value": reply["Value"]}
    errno = reply.get("Errno", 0)
    if len(reply) == 3 and type(errno) is int and _ERRNO_MIN <= errno <= _ERRNO_MAX:
        return reply
    clean: DErrorReturn = {"OK": False, "Errno": normalize_errno(errno), "Message": reply["Message"]}
    return clean


def overload_retry_after(reply: DReturn) -> float | None:
    """The delay suggested by a server that refused the call before running anything, or ``None``.

    ``None`` unless ``reply`` is an ``EOVERLOAD`` refusal carrying ``RetryAfter`` (our server's mark that no handler
    ran). A ``RetryAfter`` that is not a finite number >= 0 still marks the refusal, with no suggestion (0.0).
    """
    if reply["OK"] or RETRY_AFTER_KEY not in reply or normalize_errno(reply.get("Errno")) != EOVERLOAD:
        return None
    value: Any = reply.get(RETRY_AFTER_KEY)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return 0.0
    return float(value)


def refusal_error(reply: DErrorReturn) -> RemoteError:
    """The exception for a refused proposal (or an overload refusal), with the reply normalised."""
    retry_after = overload_retry_after(reply)
    clean: DErrorReturn = normalize_reply(reply)  # type: ignore[assignment]  # an S_ERROR stays one
    if retry_after is not None:
        return ServiceOverloaded(clean, retry_after)
    return RemoteError(clean)


def result_or_overload(result: DReturn) -> DReturn:
    """The call's result for the caller; raises :class:`ServiceOverloaded` when the server ran nothing."""
    if result["OK"]:
        return result if len(result) == 2 else normalize_reply(result)
    if RETRY_AFTER_KEY in result:
        retry_after = overload_retry_after(result)
        if retry_after is not None:
            raise ServiceOverloaded(normalize_reply(result), retry_after)  # type: ignore[arg-type]
    return normalize_reply(result)


class _CallCounter(Protocol):
    """What :func:`call_outcome` updates on a client connection (blocking or asyncio)."""

    url: str
    calls: int
    last_used: float


def call_outcome(conn: _CallCounter, event: object) -> DReturn:
    """The caller's result from the event that answers a call sent on ``conn`` (counted there). A refusal of the
    call's proposal raises (the server dropped the arguments unread; the connection stays usable), as does an
    overload refusal; any other event is a :class:`ProtocolError`."""
    if isinstance(event, CallResult):
        conn.calls += 1
        conn.last_used = time.monotonic()
        return result_or_overload(event.result)
    if isinstance(event, ProposalRefused):
        raise refusal_error(event.error)
    raise ProtocolError(f"{conn.url}: expected the call's result, got {type(event).__name__}")
