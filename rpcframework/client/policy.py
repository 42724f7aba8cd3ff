"""Timeouts, deadlines and retries as immutable values (urllib3 style), testable without sleeping.

Nothing here performs I/O or sleeps: :class:`Deadline` reads an injectable clock, :meth:`Retry.sleep_for`
*computes* a pause and the caller decides whether to sleep it. The networking code combines them like this::

    deadline = options.timeout.start(clock)              # the whole call
    retry = options.retries.resolve(url_count)
    for url in selector.attempt_order(max_attempts=retry.max_attempts):
        phase = CallPhase.CONNECTING
        try:
            ...                                          # connect / handshake / propose / send / receive
        except RPCFrameworkError as exc:
            if not retry.is_retryable(exc, phase):
                raise
            selector.ban(url)
            retry = retry.increment(exc, phase, url=url)  # raises exc when the budget is spent
            sleep(retry.sleep_for(deadline))

Timeout semantics differ from DISET on purpose. DISET's timeout is a per-socket-operation inactivity timeout,
so a call that keeps trickling bytes can last far longer than "the timeout", and a call that stalls twice can take
twice as long. Ours is a **deadline for the whole call**: connect, TLS handshake, proposal, arguments and result
together never take longer than ``Timeout.total``. The connect and handshake limits are additional, shorter caps
for those steps only.

DISET clamps a caller's timeout to at least 120 s (added after explicit 120 s timeouts broke bulk operations). We do
**not** clamp: a caller who writes ``ping(timeout=5)`` wants to know within 5 s, and because ours is a total
deadline the value is honest. Code ported from DIRAC that passed small values relying on the clamp should pass
``timeout=120`` explicitly (see ``docs/client.md``).

Retries happen only before the call's arguments have been sent (``CallPhase.arguments_sent`` is false):
once any byte of the arguments may have reached the server, the handler may run, and running it twice is worse than
reporting an error (at-most-once execution, as DISET). The one exception is :class:`ServiceOverloaded`: the server
itself said that it ran nothing (``EOVERLOAD`` with its ``RetryAfter`` mark), so the call is retried, after
:meth:`Retry.overload_pause` when it goes back to a server that refused it. Credential, peer-verification and
authorization failures are never retried: another attempt cannot fix them and would only hide the real cause.
"""

from __future__ import annotations

import enum
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import NamedTuple

from rpcframework.deadline import Clock, Deadline, check_seconds
from rpcframework.errors import (
    CodecError,
    ConfigurationError,
    ProtocolError,
    RemoteError,
    SecurityError,
    ServiceOverloaded,
    TransportError,
)
from rpcframework.returnvalues import ENOAUTH, EUPGRADE
from rpcframework.transports.base import DEFAULT_KEEPALIVE

# Deadline, Clock and check_seconds live in rpcframework/deadline.py (the one deadline type of every layer) and are
# re-exported here, with the client's other values.
__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_TOTAL_TIMEOUT",
    "CallPhase",
    "Clock",
    "Deadline",
    "Retry",
    "RetryEvent",
    "Timeout",
    "check_seconds",
    "is_retryable_error",
]

#: DISET's ``DEFAULT_RPC_TIMEOUT``: the whole call (ours) / each socket operation (DISET).
DEFAULT_TOTAL_TIMEOUT = 600.0
#: DISET's ``DEFAULT_CONNECTION_TIMEOUT`` for connect and for the TLS handshake.
DEFAULT_CONNECT_TIMEOUT = 10.0

# A server that refused the proposal with one of these will refuse it again anywhere: not worth a retry.
_FINAL_REMOTE_ERRNOS = frozenset({ENOAUTH, EUPGRADE})


@dataclass(frozen=True)
class Timeout:
    """How long a call may take: ``total`` for the whole call, ``connect`` and ``handshake`` per step.

    ``keepalive`` is how long an open connection may go without any acknowledgement from the server (TCP
    keepalive probes, answered by the server's kernel even while a handler runs for minutes): after that the host
    is taken for down or cut off, the call waiting on it fails with :class:`~rpcframework.errors.PeerSilent`
    instead of waiting for its whole deadline, and the URL is banned.

    ``None`` disables a limit. ``Timeout.from_value(30)`` is the legacy DISET ``timeout=30`` (a total of 30 s,
    the other limits unchanged).
    """

    total: float | None = DEFAULT_TOTAL_TIMEOUT
    connect: float | None = DEFAULT_CONNECT_TIMEOUT
    handshake: float | None = DEFAULT_CONNECT_TIMEOUT
    keepalive: float | None = DEFAULT_KEEPALIVE

    def __post_init__(self) -> None:
        check_seconds("Timeout.total", self.total)
        check_seconds("Timeout.connect", self.connect)
        check_seconds("Timeout.handshake", self.handshake)
        check_seconds("Timeout.keepalive", self.keepalive)

    @classmethod
    def from_value(cls, value: Timeout | float | None) -> Timeout:
        """Normalise what users pass as ``timeout=``: a :class:`Timeout`, seconds, or ``None`` (default)."""
        if value is None:
            return cls()
        if isinstance(value, Timeout):
            return value
        check_seconds("timeout", value)
        return cls(total=float(value))

    def with_total(self, total: float | None) -> Timeout:
        return replace(self, total=total)

    def start(self, clock: Clock = time.monotonic) -> Deadline:
        """The deadline of a call that starts now."""
        return Deadline.after(self.total, clock)

    def connect_deadline(self, call: Deadline) -> Deadline:
        """The deadline for the TCP connect step of a call: the call's deadline, capped by ``connect``."""
        return call.cap(self.connect)

    def handshake_deadline(self, call: Deadline) -> Deadline:
        """The deadline for the TLS handshake step of a call, capped by ``handshake``."""
        return call.cap(self.handshake)


class CallPhase(enum.Enum):
    """How far a call got when it failed; decides whether a retry may repeat it.

    The networking code must switch to ``ARGUMENTS_SENT`` *before* writing the first byte of the arguments: a
    partly written frame may still reach the handler, so "maybe sent" counts as sent.
    """

    CONNECTING = "connecting"
    HANDSHAKING = "handshaking"
    PROPOSING = "proposing"
    ARGUMENTS_SENT = "arguments_sent"

    @property
    def arguments_sent(self) -> bool:
        return self is CallPhase.ARGUMENTS_SENT


class RetryEvent(NamedTuple):
    """One failed attempt, kept in :attr:`Retry.history`."""

    url: str | None
    phase: CallPhase
    error: BaseException


def is_retryable_error(error: BaseException, phase: CallPhase) -> bool:
    """The retry rule shared by every :class:`Retry`: transient failures before the arguments were sent, and
    overload refusals (the server ran nothing)."""
    if isinstance(error, ServiceOverloaded):
        return True
    if phase.arguments_sent:
        return False
    if isinstance(error, SecurityError | ConfigurationError | CodecError):
        # Credentials, trust and authorization do not change between attempts; neither do bad settings or an
        # unencodable argument.
        return False
    if isinstance(error, RemoteError):
        return error.errno not in _FINAL_REMOTE_ERRNOS
    return isinstance(error, TransportError | ProtocolError)


@dataclass(frozen=True)
class Retry:
    """An immutable retry budget. ``increment()`` returns the next state; nothing here sleeps.

    ``total`` is the number of retries after the first attempt; ``None`` means DISET's budget, resolved against
    the number of URLs by :meth:`resolve` (3 rounds over the URLs, 2 rounds with more than 2 URLs). Backoff before
    retry *n* (1-based) is 0 for the first retry (the next attempt normally goes to another URL), then
    ``backoff_factor * 2 ** (n - 2)`` plus a uniform jitter up to ``backoff_jitter``, capped at ``backoff_max``.
    """

    total: int | None = None
    backoff_factor: float = 0.5
    backoff_max: float = 10.0
    backoff_jitter: float = 0.5
    history: tuple[RetryEvent, ...] = ()

    def __post_init__(self) -> None:
        if self.total is not None and (isinstance(self.total, bool) or not isinstance(self.total, int)):
            raise ConfigurationError(f"Retry.total must be an int or None, not {self.total!r}")
        if self.total is not None and self.total < 0:
            raise ConfigurationError(f"Retry.total must be >= 0, not {self.total}")
        for name in ("backoff_factor", "backoff_max", "backoff_jitter"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < math.inf:
                raise ConfigurationError(f"Retry.{name} must be a finite number >= 0, not {value!r}")

    @classmethod
    def from_value(cls, value: Retry | int | None) -> Retry:
        """Normalise what users pass as ``retries=``: a :class:`Retry`, a count, or ``None`` (DISET default)."""
        if isinstance(value, Retry):
            return value
        return cls(total=value)

    @staticmethod
    def diset_total(url_count: int) -> int:
        """DISET's budget: ``rounds x urls`` attempts (3 rounds, 2 with more than 2 URLs), as retries."""
        count = max(1, url_count)
        rounds = 2 if count > 2 else 3
        return rounds * count - 1

    def resolve(self, url_count: int) -> Retry:
        """This retry with a concrete ``total`` for a service with ``url_count`` URLs."""
        return self if self.total is not None else replace(self, total=self.diset_total(url_count))

    @property
    def attempts(self) -> int:
        """Failed attempts so far."""
        return len(self.history)

    @property
    def max_attempts(self) -> int | None:
        """First attempt plus retries, or ``None`` while ``total`` is unresolved."""
        return None if self.total is None else self.total + 1

    @property
    def exhausted(self) -> bool:
        return self.total is not None and self.attempts > self.total

    def is_retryable(self, error: BaseException, phase: CallPhase) -> bool:
        """Whether ``error`` in ``phase`` may be retried at all (budget aside). Never after arguments were sent."""
        return is_retryable_error(error, phase)

    def increment(self, error: BaseException, phase: CallPhase, *, url: str | None = None) -> Retry:
        """Record a failed attempt and return the next state.

        Raises ``error`` itself (with a note listing the attempts) when it is not retryable or the budget is spent,
        so the caller sees the real cause, not a wrapper.
        """
        new = replace(self, history=(*self.history, RetryEvent(url, phase, error)))
        if not self.is_retryable(error, phase):
            raise error
        if new.total is None:
            raise ConfigurationError("Retry.total is unresolved; call resolve(url_count) first")
        if new.exhausted:
            error.add_note(new._describe())
            raise error
        return new

    def backoff(self) -> float:
        """The pause before the next retry, without jitter."""
        retries_done = self.attempts
        if retries_done <= 1:
            return 0.0
        return float(min(self.backoff_max, self.backoff_factor * 2 ** (retries_done - 2)))

    def sleep_for(self, deadline: Deadline | None = None, *, rand: Callable[[], float] = random.random) -> float:
        """Seconds to pause before the next attempt (computed, never slept), bounded by ``deadline``.

        ``rand`` returns a float in [0, 1) for the jitter; inject a constant in tests.
        """
        pause = self.backoff()
        if pause > 0 and self.backoff_jitter > 0:
            pause = min(self.backoff_max, pause + rand() * self.backoff_jitter)
        if deadline is not None:
            remaining = deadline.remaining()
            if remaining is not None:
                pause = min(pause, remaining)
        return pause

    def overload_pause(
        self, suggested: float | None, deadline: Deadline | None = None, *, rand: Callable[[], float] = random.random
    ) -> float | None:
        """Seconds to pause before going back to a server that answered "overloaded" (computed, never slept).

        At least the server's ``suggested`` delay (``None``: none was given; then at least ``backoff_factor``) and
        the usual :meth:`backoff`, plus a uniform jitter up to ``backoff_jitter`` so that clients refused together
        do not come back together; at most ``backoff_max`` unless the suggestion itself is longer. ``None`` when
        the pause cannot be honoured: the suggestion is over ``backoff_max`` (a server cannot make us wait longer
        than this client allows), or the pause would not end before ``deadline``. Then the caller gets the
        overload reply instead of a retry.
        """
        floor = max(self.backoff(), self.backoff_factor if suggested is None else suggested)
        if floor > self.backoff_max:
            return None
        pause = min(self.backoff_max, floor + rand() * self.backoff_jitter) if self.backoff_jitter > 0 else floor
        if deadline is not None:
            remaining = deadline.remaining()
            if remaining is not None and pause >= remaining:
                return None
        return pause

    def _describe(self) -> str:
        lines = [f"gave up after {self.attempts} attempt(s):"]
        lines += [f"  {event.url or '?'} ({event.phase.value}): {event.error!r}" for event in self.history]
        return "\n".join(lines)
