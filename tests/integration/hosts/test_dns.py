"""A host name with several addresses is several endpoints: spread, failed over, banned one by one, re-resolved.

Inside the client host, ``svc`` resolves through its own /etc/hosts (a mount namespace set up by ``ip netns exec``),
which the test rewrites: no real DNS is involved. Each service host's certificate names ``svc``.
"""

from __future__ import annotations

import pytest

from benchmarks.hosts_scenarios import Load, run_load, split
from benchmarks.netns import HOSTS, TestBed

pytestmark = pytest.mark.timeout(90)

URL = "dips://svc:9135/Bed/Where"


def test_a_name_with_three_addresses_spreads_and_follows_the_name(bed: TestBed) -> None:
    for host in HOSTS:
        bed.start(host)
    load = Load(threads=8, duration=7.0, extra=("--resolve-interval", "0.5"))
    actions = [(2.0, lambda: bed.resolve("svc", ["h1", "h3"])), (4.5, lambda: bed.resolve("svc", HOSTS))]
    data, (dropped, restored, _) = run_load(bed, [URL], load, actions)
    settle = 1.5  # the next resolution is due within 0.5 s; connections already open finish their call
    before, without_h2, after = split(
        data["calls"],
        [
            ("before", data["started"], dropped),
            ("without h2", dropped + settle, restored),
            ("after", restored + settle, data["ended"]),
        ],
    )
    assert before.failed == without_h2.failed == after.failed == 0
    assert set(before.hosts) == set(HOSTS)
    assert set(without_h2.hosts) == {"h1", "h3"}
    assert set(after.hosts) == set(HOSTS)


def test_a_silent_address_is_banned_and_the_others_serve(bed: TestBed) -> None:
    for host in HOSTS:
        bed.start(host)
    bed.link("h2", up=False)
    data, _ = run_load(bed, [URL], Load(threads=4, duration=3.0, connect_timeout=1.0), [])
    (phase,) = split(data["calls"], [("all", data["started"], data["ended"])])
    assert phase.failed == 0, phase.reasons  # a connect timeout is retried on another address
    assert set(phase.hosts) == {"h1", "h3"}
    assert list(data["bans"]) == [f"{URL}#10.77.0.12"]  # banned alone, not the name
