"""Rolling restart and killed instances under 32 busy client threads, in network namespaces.

SIGTERM makes an instance stop accepting, finish what it runs and close its idle kept-alive connections with a
goodbye; a client whose call crosses the goodbye retries it elsewhere (nothing was read). Restarting the three
instances one after the other loses no call, and every instance is back in use soon after (a refused connection
bans a URL for a few seconds only). A SIGKILL loses only the calls in flight on the killed instance.
"""

from __future__ import annotations

import pytest

from benchmarks.hosts_scenarios import Load, scenario_kill, scenario_rolling
from benchmarks.netns import HOSTS, TestBed

pytestmark = pytest.mark.timeout(150)

THREADS = 32


def test_a_rolling_restart_under_32_busy_clients_loses_no_call(bed: TestBed) -> None:
    result = scenario_rolling(bed, Load(threads=THREADS, duration=24.0), first=2.0, every=1.0)
    before, during, after = result.phases
    assert result.calls
    assert result.failures == [], result.phase("during").reasons
    assert set(before.hosts) == set(during.hosts) == set(HOSTS)
    assert set(after.hosts) == set(HOSTS), f"not every restarted instance is back in use: {after.hosts}"


def test_a_killed_instance_costs_only_the_calls_in_flight_on_it(bed: TestBed) -> None:
    result = scenario_kill(bed, Load(threads=THREADS, duration=9.0), kill_at=2.0, down_for=3.0)
    killed = result.marks["fault"]
    assert len(result.failures) <= THREADS
    for start, took, _host, reason in result.failures:
        assert "h1" in reason or "10.77.0.11" in reason, reason
        assert start <= killed + 0.5 and start + took >= killed  # in flight when h1 died
    assert result.phase("after").failed == 0
    assert set(result.phase("during").hosts) == {"h2", "h3"}
