"""URLSelector: seeded shuffles, failover last, bans that expire on a fake clock, host avoidance, threads."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from support.threads import run_concurrently

from rpcframework.client.selection import URLSelector, url_host
from rpcframework.errors import ConfigurationError

from .conftest import FakeClock

P = [f"dips://h{i}.example.org:9135/S/C" for i in range(1, 5)]
F = ["dips://fail1.example.org:9135/S/C", "dips://fail2.example.org:9135/S/C"]


def selector(
    primary: list[str] = P, failover: list[str] = F, *, seed: int = 7, clock: FakeClock | None = None, ban: float = 60
) -> URLSelector:
    return URLSelector(primary, failover, rng=random.Random(seed), clock=clock or FakeClock(), ban_seconds=ban)


def test_url_host() -> None:
    assert url_host("dips://h1.example.org:9135/S/C") == "h1.example.org"
    assert url_host("DataManagement/Dispatcher") is None


def test_primary_is_shuffled_with_the_injected_random_and_failover_comes_last_in_order() -> None:
    order = list(selector().attempt_order())
    assert sorted(order[:4]) == sorted(P)
    assert order[4:] == F
    assert order == list(selector(seed=7).attempt_order()), "same seed, same order"
    orders = {tuple(selector(seed=seed).attempt_order())[:4] for seed in range(50)}
    assert len(orders) > 5, "different seeds spread the load"
    assert all(tuple(selector(seed=s).attempt_order())[4:] == tuple(F) for s in range(20))


def test_each_plan_reshuffles_so_calls_spread_over_primaries() -> None:
    sel = selector()
    firsts = Counter(next(sel.attempt_order()) for _ in range(400))
    assert set(firsts) == set(P), "failover URLs are never first while a primary is available"
    assert min(firsts.values()) > 50


def test_duplicates_are_dropped_and_failover_already_in_primary_stays_primary() -> None:
    sel = URLSelector([P[0], P[0], P[1]], [P[1], F[0]], rng=random.Random(1))
    assert sel.primary == (P[0], P[1])
    assert sel.failover == (F[0],)


def test_rejects_empty_and_string_lists() -> None:
    with pytest.raises(ConfigurationError):
        URLSelector([], [])
    with pytest.raises(ConfigurationError):
        URLSelector(P[0])


def test_one_round_by_default_and_max_attempts_makes_more_rounds() -> None:
    sel = selector()
    assert len(list(sel.attempt_order())) == 6
    plan = list(sel.attempt_order(max_attempts=13))
    assert len(plan) == 13
    assert Counter(plan) == Counter({url: 2 for url in P + F} | {plan[12]: 3})
    assert list(sel.attempt_order(max_attempts=0)) == []


def test_banned_urls_go_last_and_bans_expire(clock: FakeClock) -> None:
    sel = selector(P[:2], [], clock=clock, ban=30)
    sel.ban(P[0])
    for _ in range(20):
        assert list(sel.attempt_order()) == [P[1], P[0]]
    assert pytest.approx(sel.banned()[P[0]]) == 30
    clock.advance(29.9)
    assert next(sel.attempt_order()) == P[1]
    clock.advance(0.1)
    assert sel.banned() == {}
    assert {next(sel.attempt_order()) for _ in range(50)} == set(P[:2]), "expired ban: back in rotation"


def test_a_ban_during_a_call_counts_for_the_rest_of_the_plan(clock: FakeClock) -> None:
    sel = selector(P[:3], [], clock=clock)
    plan = sel.attempt_order(max_attempts=6)
    first = next(plan)
    sel.ban(first)
    rest = list(plan)
    assert first not in rest[:2], "the URL that just failed is not retried while others remain"
    assert len(rest) == 5
    assert rest[4] == first, "second round: the banned URL comes last again"


def test_all_banned_falls_back_to_the_least_recently_banned(clock: FakeClock) -> None:
    sel = selector(P[:3], F[:1], clock=clock)
    for url in [P[2], F[0], P[0], P[1]]:
        sel.ban(url)
        clock.advance(1)
    assert list(sel.attempt_order()) == [P[2], F[0], P[0], P[1]], "oldest ban first; a plan never comes up empty"


def test_failover_used_when_primaries_are_banned(clock: FakeClock) -> None:
    sel = selector(P[:2], F, clock=clock)
    sel.ban(P[0])
    sel.ban(P[1])
    assert list(sel.attempt_order())[:2] == F


def test_succeeded_lifts_a_ban(clock: FakeClock) -> None:
    sel = selector(P[:2], [], clock=clock)
    sel.ban(P[0])
    sel.succeeded(P[0])
    assert sel.banned() == {}
    sel.ban("dips://unknown:1/S/C")
    assert sel.banned() == {}, "URLs the selector does not hold are ignored"


def test_a_banned_host_is_avoided_with_more_than_two_urls(clock: FakeClock) -> None:
    same_host = ["dips://a.org:9135/S/C", "dips://a.org:9136/S/C", "dips://b.org:9135/S/C", "dips://c.org:9135/S/C"]
    for seed in range(30):
        sel = URLSelector(same_host, [], rng=random.Random(seed), clock=clock)
        sel.ban(same_host[0])
        order = list(sel.attempt_order())
        assert order[-1] == same_host[0]
        assert order[-2] == same_host[1], "the other port on the banned host is tried after clean hosts"


def test_no_host_avoidance_with_two_urls(clock: FakeClock) -> None:
    two = ["dips://a.org:9135/S/C", "dips://a.org:9136/S/C"]
    sel = URLSelector(two, [], rng=random.Random(3), clock=clock)
    sel.ban(two[0])
    assert list(sel.attempt_order()) == [two[1], two[0]]


def test_host_avoidance_applies_to_failover_too(clock: FakeClock) -> None:
    failover = ["dips://a.org:1/S/C", "dips://z.org:1/S/C"]
    sel = URLSelector(["dips://a.org:2/S/C"], failover, rng=random.Random(1), clock=clock)
    sel.ban("dips://a.org:2/S/C")
    assert list(sel.attempt_order()) == ["dips://z.org:1/S/C", "dips://a.org:1/S/C", "dips://a.org:2/S/C"]


def test_thirty_two_threads_share_one_selector() -> None:
    sel = URLSelector(P, F, rng=random.Random(5))

    def worker(index: int) -> None:
        for round_ in range(200):
            plan = sel.attempt_order(max_attempts=3)
            url = next(plan)
            if (index + round_) % 3 == 0:
                sel.ban(url)
            else:
                sel.succeeded(url)
            assert len(list(plan)) == 2
            sel.banned()

    assert run_concurrently(worker, 32) == []
    assert set(sel.banned()) <= set(P + F)


def test_the_url_with_fewest_outstanding_calls_comes_first() -> None:
    sel = selector()
    for _ in range(3):
        sel.started(P[0])  # three calls stuck on h1 (a host that stopped answering holds them)
    sel.started(P[1])
    firsts = Counter(next(sel.attempt_order()) for _ in range(200))
    assert set(firsts) == {P[2], P[3]}, "a host holding calls gets no new ones while others have fewer"
    for url in P[2:]:
        sel.started(url)
        sel.started(url)
    assert {next(sel.attempt_order()) for _ in range(50)} == {P[1]}
    for _ in range(3):
        sel.finished(P[0])
    assert {next(sel.attempt_order()) for _ in range(50)} == {P[0]}
    assert sel.outstanding()[P[0]] == 0


def test_outstanding_calls_never_outrank_bans_or_failover(clock: FakeClock) -> None:
    sel = selector(P[:2], F, clock=clock)
    for _ in range(5):
        sel.started(P[0])
    sel.ban(P[1])
    order = list(sel.attempt_order())
    assert order == [P[0], *F, P[1]]  # busy beats failover; failover beats banned


def test_finished_without_started_and_a_single_url_are_harmless() -> None:
    sel = selector(P[:1], [])
    sel.started(P[0])
    sel.finished(P[0])
    sel.finished(P[0])
    assert sel.outstanding() == {}
    two = selector(P[:2], [])
    two.finished(P[0])
    assert two.outstanding() == {P[0]: 0, P[1]: 0}


def test_a_shorter_ban_expires_sooner_and_never_exceeds_the_selector_ban(clock: FakeClock) -> None:
    sel = selector(P[:2], [], clock=clock, ban=60)
    sel.ban(P[0], 5.0)  # a refused connection: an instance restarting
    sel.ban(P[1], 600.0)  # capped at the selector's 60 s
    assert sel.banned() == {P[0]: 5.0, P[1]: 60.0}
    clock.now += 5.0
    assert sel.banned() == {P[1]: 55.0}
    assert next(sel.attempt_order()) == P[0]
