"""Timeout, Deadline and Retry as values: a fake clock and computed pauses, never a real sleep."""

from __future__ import annotations

import pytest

from rpcframework.client.policy import (
    DEFAULT_TOTAL_TIMEOUT,
    CallPhase,
    Deadline,
    Retry,
    Timeout,
)
from rpcframework.errors import (
    AuthorizationError,
    CodecError,
    ConfigurationError,
    ConnectError,
    ConnectionClosedError,
    CredentialsError,
    DeadlineExceeded,
    HandshakeError,
    PeerVerificationError,
    ProtocolError,
    RemoteError,
    ServiceOverloaded,
)
from rpcframework.returnvalues import ENOAUTH, EOVERLOAD, EUPGRADE, S_ERROR

from .conftest import FakeClock

BEFORE_ARGS = [CallPhase.CONNECTING, CallPhase.HANDSHAKING, CallPhase.PROPOSING]


# -- Deadline ----------------------------------------------------------------------------------------------------


def test_deadline_counts_down_on_the_injected_clock(clock: FakeClock) -> None:
    deadline = Deadline.after(10, clock)
    assert deadline.remaining() == 10
    assert not deadline.expired
    clock.advance(4)
    assert deadline.remaining() == 6
    clock.advance(6)
    assert deadline.expired
    assert deadline.remaining() == 0
    clock.advance(100)
    assert deadline.remaining() == 0, "remaining never goes negative"


def test_deadline_never(clock: FakeClock) -> None:
    deadline = Deadline.never(clock)
    clock.advance(1e9)
    assert deadline.remaining() is None
    assert not deadline.expired
    assert Deadline.after(None, clock).expires_at is None


def test_deadline_min_and_cap(clock: FakeClock) -> None:
    long, short, never = Deadline.after(60, clock), Deadline.after(5, clock), Deadline.never(clock)
    assert long.min(short).remaining() == 5
    assert short.min(long).remaining() == 5
    assert never.min(short).remaining() == 5
    assert short.min(never) is short
    assert long.cap(10).remaining() == 10
    assert short.cap(10).remaining() == 5
    assert long.cap(None) is long


def test_deadline_check_raises_deadline_exceeded(clock: FakeClock) -> None:
    deadline = Deadline.after(1, clock)
    deadline.check()
    clock.advance(1)
    with pytest.raises(DeadlineExceeded, match="connect deadline exceeded"):
        deadline.check("connect")
    with pytest.raises(TimeoutError):  # also the builtin, for callers who catch that
        deadline.check()


# -- Timeout -----------------------------------------------------------------------------------------------------


def test_timeout_defaults_follow_diset() -> None:
    timeout = Timeout()
    assert timeout.total == DEFAULT_TOTAL_TIMEOUT == 600
    assert timeout.connect == timeout.handshake == 10


def test_timeout_from_value_accepts_legacy_seconds_without_clamping() -> None:
    assert Timeout.from_value(30) == Timeout(total=30.0)
    assert Timeout.from_value(5).total == 5, "unlike DISET we do not clamp to 120 s"
    assert Timeout.from_value(None) == Timeout()
    custom = Timeout(total=1, connect=0.5, handshake=None)
    assert Timeout.from_value(custom) is custom


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), True, "30"])
def test_timeout_rejects_nonsense(bad: object) -> None:
    with pytest.raises(ConfigurationError):
        Timeout.from_value(bad)  # type: ignore[arg-type]


def test_timeout_step_deadlines_are_capped_by_the_call(clock: FakeClock) -> None:
    timeout = Timeout(total=30, connect=10, handshake=12)
    call = timeout.start(clock)
    assert timeout.connect_deadline(call).remaining() == 10
    clock.advance(25)
    assert timeout.connect_deadline(call).remaining() == 5, "a step never outlives the call"
    assert timeout.handshake_deadline(call).remaining() == 5


def test_timeout_is_immutable() -> None:
    timeout = Timeout()
    with pytest.raises(AttributeError):
        timeout.total = 1  # type: ignore[misc]
    assert timeout.with_total(5).total == 5
    assert timeout.total == 600


# -- Retry: what may be retried ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        ConnectError("refused"),
        HandshakeError("not TLS"),
        ConnectionClosedError("reset"),
        DeadlineExceeded("connect"),
        ProtocolError("garbage"),
        RemoteError(S_ERROR(EOVERLOAD, "busy")),
        RemoteError(S_ERROR("DataManagement/Dispatcher is not up in this server")),
    ],
)
@pytest.mark.parametrize("phase", BEFORE_ARGS)
def test_transient_errors_before_arguments_are_retryable(error: Exception, phase: CallPhase) -> None:
    assert Retry().is_retryable(error, phase)


@pytest.mark.parametrize(
    "error",
    [
        PeerVerificationError("unknown CA"),
        CredentialsError("proxy expired"),
        AuthorizationError("Unauthorized query"),
        RemoteError(S_ERROR(ENOAUTH, "Unauthorized query")),
        RemoteError(S_ERROR(EUPGRADE, "too old")),
        ConfigurationError("bad"),
        CodecError("cannot encode"),
        ValueError("a bug"),
    ],
)
@pytest.mark.parametrize("phase", BEFORE_ARGS)
def test_security_and_permanent_errors_are_never_retried(error: Exception, phase: CallPhase) -> None:
    assert not Retry().is_retryable(error, phase)
    with pytest.raises(type(error)):
        Retry(total=5).increment(error, phase)


@pytest.mark.parametrize("error", [ConnectError("x"), ConnectionClosedError("x"), DeadlineExceeded("x")])
def test_nothing_is_retried_after_the_arguments_were_sent(error: Exception) -> None:
    retry = Retry(total=100)
    assert not retry.is_retryable(error, CallPhase.ARGUMENTS_SENT)
    with pytest.raises(type(error)):
        retry.increment(error, CallPhase.ARGUMENTS_SENT)


def test_an_overload_refusal_is_retried_even_after_the_arguments_were_sent() -> None:
    # The server marked it (RetryAfter): it ran nothing. A plain 1601 result is a handler's answer: never retried.
    overloaded = ServiceOverloaded(S_ERROR(EOVERLOAD, "busy"), 0.5)
    retry = Retry(total=1)
    assert retry.is_retryable(overloaded, CallPhase.ARGUMENTS_SENT)
    assert retry.increment(overloaded, CallPhase.ARGUMENTS_SENT).attempts == 1
    assert not retry.is_retryable(RemoteError(S_ERROR(EOVERLOAD, "busy")), CallPhase.ARGUMENTS_SENT)


# -- Retry: the budget -------------------------------------------------------------------------------------------


def test_increment_returns_new_values_and_raises_the_real_error_when_exhausted() -> None:
    first = Retry(total=2)
    second = first.increment(ConnectError("a"), CallPhase.CONNECTING, url="dips://a:1/S/C")
    third = second.increment(ConnectError("b"), CallPhase.HANDSHAKING, url="dips://b:1/S/C")
    assert first.attempts == 0 and second.attempts == 1 and third.attempts == 2
    assert [event.url for event in third.history] == ["dips://a:1/S/C", "dips://b:1/S/C"]
    assert third.history[1].phase is CallPhase.HANDSHAKING
    final = ConnectError("c")
    with pytest.raises(ConnectError) as info:
        third.increment(final, CallPhase.CONNECTING, url="dips://c:1/S/C")
    assert info.value is final, "the caller sees the real cause, not a wrapper"
    assert "gave up after 3 attempt(s)" in "\n".join(info.value.__notes__)


def test_retry_zero_means_a_single_attempt() -> None:
    with pytest.raises(ConnectError):
        Retry(total=0).increment(ConnectError("x"), CallPhase.CONNECTING)
    assert Retry(total=0).max_attempts == 1


def test_diset_default_budget_depends_on_the_url_count() -> None:
    assert Retry().total is None and Retry().max_attempts is None
    assert Retry().resolve(1).max_attempts == 3
    assert Retry().resolve(2).max_attempts == 6
    assert Retry().resolve(3).max_attempts == 6, "2 rounds with more than 2 URLs"
    assert Retry().resolve(5).max_attempts == 10
    assert Retry(total=1).resolve(5).total == 1, "an explicit total wins"
    with pytest.raises(ConfigurationError, match="unresolved"):
        Retry().increment(ConnectError("x"), CallPhase.CONNECTING)


def test_from_value() -> None:
    assert Retry.from_value(None) == Retry()
    assert Retry.from_value(4).total == 4
    custom = Retry(total=1)
    assert Retry.from_value(custom) is custom
    for bad in (-1, True, 1.5):
        with pytest.raises(ConfigurationError):
            Retry.from_value(bad)  # type: ignore[arg-type]


# -- Retry: backoff, computed not slept --------------------------------------------------------------------------


def _after(failures: int, **kwargs: float) -> Retry:
    retry = Retry(total=100, **kwargs)  # type: ignore[arg-type]
    for _ in range(failures):
        retry = retry.increment(ConnectError("x"), CallPhase.CONNECTING)
    return retry


def test_first_retry_goes_at_once_then_backs_off_exponentially_up_to_the_cap() -> None:
    no_jitter = {"backoff_factor": 0.5, "backoff_max": 3.0, "backoff_jitter": 0.0}
    pauses = [_after(n, **no_jitter).sleep_for() for n in range(1, 7)]
    assert pauses == [0.0, 0.5, 1.0, 2.0, 3.0, 3.0]


def test_jitter_is_injected_and_capped() -> None:
    retry = _after(3, backoff_factor=1.0, backoff_max=2.5, backoff_jitter=1.0)
    assert retry.sleep_for(rand=lambda: 0.0) == 2.0
    assert retry.sleep_for(rand=lambda: 0.25) == 2.25
    assert retry.sleep_for(rand=lambda: 0.99) == 2.5, "jitter never breaks the cap"
    assert _after(1, backoff_jitter=1.0).sleep_for(rand=lambda: 0.9) == 0.0, "no jitter on an immediate retry"


def test_pause_never_outlives_the_deadline(clock: FakeClock) -> None:
    retry = _after(5, backoff_factor=1.0, backoff_max=60.0, backoff_jitter=0.0)
    assert retry.sleep_for() == 8.0
    assert retry.sleep_for(Deadline.after(3, clock)) == 3.0
    assert retry.sleep_for(Deadline.never(clock)) == 8.0
    clock.advance(5)
    assert retry.sleep_for(Deadline.after(3, clock).min(Deadline(clock() - 1, clock))) == 0.0


def test_retry_values_are_immutable() -> None:
    retry = Retry(total=3)
    with pytest.raises(AttributeError):
        retry.total = 4  # type: ignore[misc]
    retry.increment(ConnectError("x"), CallPhase.CONNECTING)
    assert retry.attempts == 0


# -- Retry: pauses before going back to an overloaded server -----------------------------------------------------


def test_overload_pause_honours_the_suggestion_with_jitter_on_top() -> None:
    retry = _after(1, backoff_factor=0.5, backoff_max=10.0, backoff_jitter=0.5)
    assert retry.overload_pause(2.0, rand=lambda: 0.0) == 2.0
    assert retry.overload_pause(2.0, rand=lambda: 0.5) == 2.25
    assert retry.overload_pause(None, rand=lambda: 0.0) == 0.5, "no suggestion: at least backoff_factor"
    assert retry.overload_pause(0.0, rand=lambda: 0.0) == 0.0, "a server may say 'at once'"
    later = _after(5, backoff_factor=0.5, backoff_max=10.0, backoff_jitter=0.0)
    assert later.overload_pause(1.0) == 4.0, "never shorter than the usual backoff"


def test_overload_pause_gives_up_rather_than_come_back_early_or_late(clock: FakeClock) -> None:
    retry = _after(1, backoff_max=3.0, backoff_jitter=1.0)
    assert retry.overload_pause(3.5) is None, "a suggestion over backoff_max is not honoured by waiting less"
    assert retry.overload_pause(2.9, rand=lambda: 0.99) == 3.0, "jitter never breaks the cap"
    assert retry.overload_pause(1.0, Deadline.after(1.2, clock), rand=lambda: 0.5) is None, "past the deadline"
    assert retry.overload_pause(1.0, Deadline.after(5, clock), rand=lambda: 0.5) == 1.5
