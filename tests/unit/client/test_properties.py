"""Properties: proxying never exposes private names; retries never happen after the arguments were sent."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from rpcframework.client import Client, RemoteMethod, Retry
from rpcframework.client.policy import CallPhase
from rpcframework.client.selection import URLSelector
from rpcframework.errors import (
    AuthorizationError,
    CodecError,
    ConnectError,
    ConnectionClosedError,
    CredentialsError,
    DeadlineExceeded,
    HandshakeError,
    PeerVerificationError,
    ProtocolError,
    RemoteError,
)
from rpcframework.returnvalues import S_ERROR, S_OK, DReturn

from .conftest import RecordingTarget

identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True)
private_names = st.one_of(
    identifiers.map(lambda name: "_" + name),
    identifiers.map(lambda name: f"__{name}__"),
)

errors = st.one_of(
    st.sampled_from([ConnectError, HandshakeError, ConnectionClosedError, DeadlineExceeded, ProtocolError]).map(
        lambda cls: cls("x")
    ),
    st.sampled_from([PeerVerificationError, CredentialsError, AuthorizationError, CodecError]).map(
        lambda cls: cls("x")
    ),
    st.integers(min_value=0, max_value=2000).map(lambda errno: RemoteError(S_ERROR(errno, "x"))),
    st.builds(ValueError, st.text(max_size=5)),
)
retries = st.builds(
    Retry,
    total=st.integers(min_value=0, max_value=50),
    backoff_factor=st.floats(min_value=0, max_value=10),
    backoff_max=st.floats(min_value=0, max_value=100),
    backoff_jitter=st.floats(min_value=0, max_value=5),
)


class NoCalls:
    def call(self, method: str, args: object, kwargs: object, *, timeout: float | None) -> DReturn:
        raise AssertionError("probing an attribute must never call the server")


@given(name=private_names)
def test_private_and_dunder_names_are_never_proxied(name: str) -> None:
    client = Client("S/C", transport=NoCalls())
    for holder in (client, client.some_method, client.with_options(timeout=1)):
        try:
            value = getattr(holder, name)
        except AttributeError:
            continue
        assert not isinstance(value, RemoteMethod), f"{name} was proxied on {holder!r}"


@given(name=identifiers)
def test_public_names_are_proxied_unless_reserved(name: str) -> None:
    target = RecordingTarget(lambda call: S_OK())
    client = Client("S/C", transport=target)
    value = getattr(client, name, None)
    if name.startswith("_") or name in Client._rpc_reserved:
        assert not isinstance(value, RemoteMethod)
    else:
        assert isinstance(value, RemoteMethod) and value.name == name
        assert getattr(client, name) is value
    assert target.calls == []


@given(retry=retries, error=errors, history=st.lists(st.sampled_from([c for c in CallPhase]), max_size=5))
def test_retry_is_never_allowed_after_the_arguments_were_sent(
    retry: Retry, error: Exception, history: list[CallPhase]
) -> None:
    for phase in history:
        if phase.arguments_sent or retry.exhausted:
            break
        try:
            retry = retry.increment(ConnectError("earlier"), phase)
        except ConnectError:
            break
    assert not retry.is_retryable(error, CallPhase.ARGUMENTS_SENT)
    raised = False
    try:
        retry.increment(error, CallPhase.ARGUMENTS_SENT)
    except type(error):
        raised = True
    assert raised


@given(retry=retries, rand=st.floats(min_value=0, max_value=0.999), failures=st.integers(min_value=0, max_value=30))
def test_pause_is_within_zero_and_the_cap(retry: Retry, rand: float, failures: int) -> None:
    retry = Retry(
        total=1000,
        backoff_factor=retry.backoff_factor,
        backoff_max=retry.backoff_max,
        backoff_jitter=retry.backoff_jitter,
    )
    for _ in range(failures):
        retry = retry.increment(ConnectError("x"), CallPhase.CONNECTING)
    assert 0 <= retry.sleep_for(rand=lambda: rand) <= retry.backoff_max


@given(
    primary=st.lists(st.integers(min_value=0, max_value=20), min_size=1, max_size=6, unique=True),
    failover=st.lists(st.integers(min_value=21, max_value=30), max_size=3, unique=True),
    banned=st.lists(st.integers(min_value=0, max_value=30), max_size=8),
    seed=st.integers(),
)
def test_one_round_is_a_permutation_with_failover_after_clean_primaries(
    primary: list[int], failover: list[int], banned: list[int], seed: int
) -> None:
    p = [f"dips://h{i}:1/S/C" for i in primary]
    f = [f"dips://h{i}:1/S/C" for i in failover]
    selector = URLSelector(p, f, rng=random.Random(seed), clock=lambda: 0.0)
    for index in banned:
        selector.ban(f"dips://h{index}:1/S/C")
    order = list(selector.attempt_order())
    assert sorted(order) == sorted(p + f)
    bans = selector.banned()
    clean_failover = [url for url in order if url in f and url not in bans]
    assert clean_failover == [url for url in f if url not in bans], "failover order is kept"
    first_banned = next((i for i, url in enumerate(order) if url in bans), len(order))
    assert all(url not in bans for url in order[:first_banned])
    assert all(url in bans for url in order[first_banned:]), "banned URLs only at the end"
