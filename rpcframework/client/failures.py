"""What a failed attempt means for its call: the decisions and errors ``RPCClient`` and ``AsyncRPCClient`` share.

Both clients make the attempts of a call the same way (see :mod:`rpcframework.client.rpcclient`); after a failed
one, these functions say whether and when another attempt is made (:func:`retry_state_after`, :func:`ban_seconds`,
:func:`pause_before`), what the call returns or raises when none is (:func:`unretryable_outcome`,
:func:`all_failed`), and build the errors whose texts tell the user what happened and what to do
(:func:`handshake_timeout_error`, :func:`lost_after_sending_error`, :func:`silent_peer_error`,
:func:`call_timeout_error`), and report the failure to an observer or the log. They keep no state of their own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from rpcframework.client.policy import CallPhase, Deadline, Retry
from rpcframework.client.selection import QUICK_FAILURE_BAN_SECONDS
from rpcframework.errors import (
    ConfigurationError,
    ConnectError,
    ConnectionClosedError,
    DeadlineExceeded,
    HandshakeTimeout,
    NameResolutionError,
    PeerSilent,
    RemoteError,
    RPCFrameworkError,
    ServiceOverloaded,
)
from rpcframework.returnvalues import DReturn

if TYPE_CHECKING:
    from rpcframework.client.base import Endpoint
    from rpcframework.client.inner import Attempt  # inner imports this module
    from rpcframework.observability.events import ObservedCall

__all__ = [
    "all_failed",
    "ban_seconds",
    "call_timeout_error",
    "check_dead_pooled_connection",
    "first_attempt_outcome",
    "handshake_timeout_error",
    "log_retry",
    "lost_after_sending_error",
    "pause_before",
    "report_failure",
    "retry_state_after",
    "silent_peer_error",
    "unretryable_outcome",
]


def retry_state_after(
    retry: Retry, exc: RPCFrameworkError, phase: CallPhase, url: str, *, given_up: set[str], urls: Sequence[str]
) -> Retry | None:
    """The retry state after a failed attempt that may be retried, or ``None`` when no attempt is left: the budget is
    spent, or every URL failed in a way another attempt cannot change (a name that does not resolve, a peer that
    does not answer the TLS handshake), which ``given_up`` records for the rest of the call."""
    if isinstance(exc, NameResolutionError | HandshakeTimeout):
        given_up.add(url)
        if given_up.issuperset(urls):
            return None
    try:
        return retry.increment(exc, phase, url=url)
    except RPCFrameworkError:
        return None


def ban_seconds(exc: RPCFrameworkError) -> float | None:
    """How long to avoid a URL after ``exc`` (``None``: the selector's full ban). A refused connection (an instance
    restarting) is found out again at no cost: a short ban brings the URL back soon after the instance is."""
    if isinstance(exc, ConnectError) and not isinstance(exc, NameResolutionError):
        return QUICK_FAILURE_BAN_SECONDS
    return None


def all_failed(service: str, failures: list[tuple[str, RPCFrameworkError]]) -> DReturn:
    """The outcome of a call whose every attempt failed: the last refusal as the server sent it, its own error after
    a single attempt, or an error naming each URL and its latest reason."""
    if not failures:
        raise ConfigurationError(f"{service}: no URL to try (retries exhausted before any attempt)")
    last = failures[-1][1]
    if isinstance(last, RemoteError):
        return last.result  # the server's own refusal, as DIRAC would show it
    if len(failures) == 1:
        raise last  # one attempt: its own error says it all
    latest = {url: exc for url, exc in failures}  # one reason per URL: the latest
    reasons = "; ".join(f"{url}: {_reason(exc)}" for url, exc in latest.items())
    message = f"{service}: every attempt failed ({len(failures)} attempts): {reasons}"
    try:
        error = type(last)(message, errno=last.errno)
    except TypeError:  # an exception type with its own constructor
        error = RPCFrameworkError(message, errno=last.errno)
    raise error from last


def report_failure(record: ObservedCall | None, url: str, *, banned: bool, retried: bool) -> None:
    """Tell the observer of the call (if any) that the attempt at ``url`` failed, and what followed."""
    if record is not None:
        if banned:
            record.banned(url)
        record.failed(url, retried)


def pause_before(refusal: ServiceOverloaded | None, retry: Retry, deadline: Deadline, pause: float) -> float | None:
    """The pause before an attempt: ``pause`` (the retry backoff), or, back at a server that answered "overloaded"
    in this call, at least its suggested delay with jitter (:meth:`Retry.overload_pause`); ``None`` when that does
    not fit in the deadline. Another URL is tried before going back while there is one: the plan prefers URLs
    this call tried less."""
    if refusal is None:
        return pause
    wait = retry.overload_pause(refusal.retry_after, deadline)
    return None if wait is None else max(pause, wait)


def first_attempt_outcome(first: tuple[str, Attempt, RPCFrameworkError], url: str) -> tuple[Attempt, RPCFrameworkError]:
    """The attempt and error of the call's first attempt, made before its URL plan was built (the one-URL fast
    path), taken as the outcome of the plan's first URL."""
    done_url, attempt, exc = first
    if done_url != url:  # cannot happen with one URL; be loud rather than miscount
        raise AssertionError(f"attempt plan started with {url}, not {done_url}")
    return attempt, exc


def log_retry(logger: logging.Logger, method: str, url: str, exc: RPCFrameworkError) -> None:
    """Say, on the calling client's logger, why the call goes on with another attempt."""
    if isinstance(exc, ServiceOverloaded):
        logger.info("%s on %s: the server is overloaded and ran nothing (%s); retrying", method, url, exc)
    else:
        logger.info("%s on %s failed before the arguments were sent (%s); retrying", method, url, exc)


def _reason(exc: RPCFrameworkError) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def unretryable_outcome(exc: RPCFrameworkError) -> DReturn:
    """A failure no retry can fix: a refusal keeps the server's envelope; anything else propagates."""
    if isinstance(exc, RemoteError):
        return exc.result
    raise exc


def silent_peer_error(url: str, method: str, exc: PeerSilent) -> PeerSilent:
    return PeerSilent(
        f"{method} on {url}: the host stopped answering while the call was in progress ({exc}); its arguments were "
        "sent, so it may have run there and is not retried. The URL is avoided for a while; check the host."
    )


def call_timeout_error(url: str, method: str, timeout: float | None, exc: RPCFrameworkError) -> DeadlineExceeded:
    limit = "no" if timeout is None else f"the {timeout:g} s"
    return DeadlineExceeded(f"{method} on {url}: no result within {limit} deadline of the call ({exc})")


def handshake_timeout_error(endpoint: Endpoint, limit: float | None) -> HandshakeTimeout:
    within = "" if limit is None else f" within {limit:.3g} s"
    return HandshakeTimeout(
        f"{endpoint.url}: {endpoint.host}:{endpoint.port} accepted the connection but did not answer the TLS "
        f"handshake{within}: check that the URL's port is a dips:// service (a program waiting for something else "
        "behaves like this), or give a busy server more time (Timeout.handshake; --handshake-timeout)"
    )


def lost_after_sending_error(url: str, exc: ConnectionClosedError) -> ConnectionClosedError:
    """The connection closed after the call was sent: say where, and why the call is not retried."""
    return ConnectionClosedError(
        f"{url}: {exc}; the call's arguments were sent, so it may have run there and is not retried",
        errno=exc.errno,
    )


def check_dead_pooled_connection(
    exc: ConnectionClosedError, url: str, attempt: Attempt, discard_idle: Callable[[str], int], log: logging.Logger
) -> None:
    """After an attempt's connection closed under it (the caller has closed its side): return when it was a pooled
    connection found dead before the ack (nothing ran; the server probably restarted, so its other idle connections
    to ``url`` are dropped too) and the caller may take another; else raise the call's error."""
    if attempt.reused and not attempt.phase.arguments_sent:
        dropped = discard_idle(url)
        log.debug("pooled connection to %s was dead (%s); %d more dropped", url, exc, dropped)
        return
    if attempt.phase.arguments_sent:
        raise lost_after_sending_error(url, exc) from exc
    raise exc
