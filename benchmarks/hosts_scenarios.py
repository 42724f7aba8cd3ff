"""Outage scenarios on the multi-host test bed, measured: calls/s and p99 before, during and after each fault.

Each scenario starts the instances it needs, runs :mod:`benchmarks.hosts_load` in the client host, makes its fault
at a known moment (the machine's monotonic clock, shared by every namespace) and splits the calls by when they
started. The tests in ``tests/integration/hosts`` assert on these results; ``python -m benchmarks.hosts_scenarios``
(as root) prints the table for ``docs/operations.md``.

Scenarios (32 client threads by default):

* ``kill``: three hosts; ``h1`` is killed (SIGKILL) and started again 3 s later, as a supervisor would;
* ``partition``: two hosts; ``h1``'s link goes down for ``--fault-seconds`` (its packets vanish), then up;
* ``rolling``: three hosts restarted one after the other (SIGTERM, drain, start again), as an upgrade does.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.netns import HOSTS, TestBed, remove_stale_beds, unavailable_reason

__all__ = ["Load", "Phase", "ScenarioResult", "run_load", "scenario_kill", "scenario_partition", "scenario_rolling"]

#: Extra seconds a load process may take beyond its duration before it is killed.
_LOAD_GRACE = 60.0


@dataclass(frozen=True)
class Load:
    """How the client loads the bed."""

    threads: int = 32
    duration: float = 10.0
    timeout: float = 30.0
    connect_timeout: float = 1.0
    extra: tuple[str, ...] = ()


@dataclass
class Phase:
    """The calls that started in ``[start, end)``."""

    name: str
    start: float
    end: float
    calls: int = 0
    failed: int = 0
    p99: float = 0.0
    worst: float = 0.0
    reasons: Counter[str] = field(default_factory=Counter)
    hosts: Counter[str] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        span = self.end - self.start
        return self.calls / span if span > 0 else 0.0

    def row(self) -> str:
        return f"{self.name}: {self.rate:,.0f} calls/s, p99 {self.p99 * 1000:.1f} ms, {self.failed} failed"


@dataclass
class ScenarioResult:
    name: str
    phases: list[Phase]
    calls: list[list[Any]]
    marks: dict[str, float]

    def phase(self, name: str) -> Phase:
        return next(phase for phase in self.phases if phase.name == name)

    @property
    def failures(self) -> list[list[Any]]:
        return [call for call in self.calls if call[3] is not None]


def split(calls: Sequence[list[Any]], bounds: Sequence[tuple[str, float, float]]) -> list[Phase]:
    """Phases from ``(name, start, end)``: a call counts in the phase it started in; p99 over its latencies."""
    phases = []
    for name, start, end in bounds:
        phase = Phase(name, start, end)
        latencies = []
        for call_start, took, host, reason in calls:
            if start <= call_start < end:
                phase.calls += 1
                latencies.append(took)
                if reason is None:
                    phase.hosts[host] += 1
                else:
                    phase.failed += 1
                    phase.reasons[_short_reason(reason)] += 1
        if latencies:
            latencies.sort()
            phase.p99 = latencies[max(0, math.ceil(0.99 * len(latencies)) - 1)]
            phase.worst = latencies[-1]
        phases.append(phase)
    return phases


def _short_reason(reason: str) -> str:
    return reason if len(reason) <= 160 else reason[:157] + "..."


Actions = Sequence[tuple[float, Callable[[], None]]]


def run_load(bed: TestBed, urls: Sequence[str], load: Load, actions: Actions) -> tuple[dict[str, Any], list[float]]:
    """Run the load; at each ``(seconds after the load started, action)`` run the action. Returns the load's JSON
    and the monotonic time each action started, then the time the last one ended."""
    out = bed.workdir / f"load-{time.monotonic_ns()}.json"
    argv = [
        "-m",
        "benchmarks.hosts_load",
        "--urls",
        ",".join(urls),
        "--threads",
        str(load.threads),
        "--duration",
        str(load.duration),
        "--timeout",
        str(load.timeout),
        "--connect-timeout",
        str(load.connect_timeout),
        "--out",
        str(out),
        *load.extra,
    ]
    process = bed.popen_client(*argv)
    times: list[float] = []
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("started "):
            process.kill()
            raise RuntimeError(f"the load did not start: {line!r} {process.communicate(timeout=10)[1][-3000:]}")
        started = float(line.split()[1])
        for offset, action in actions:
            pause = started + offset - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            times.append(time.monotonic())
            action()
        times.append(time.monotonic())
        _, stderr = process.communicate(timeout=load.duration + load.timeout + _LOAD_GRACE)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    if process.returncode != 0:
        raise RuntimeError(f"the load failed ({process.returncode}): {stderr[-3000:]}")
    data: dict[str, Any] = json.loads(out.read_text())
    out.unlink()
    return data, times


def scenario_kill(bed: TestBed, load: Load, *, kill_at: float = 3.0, down_for: float = 3.0) -> ScenarioResult:
    """Three hosts; h1 SIGKILLed at ``kill_at`` s, started again ``down_for`` s later."""
    for host in HOSTS:
        bed.start(host)
    victim = bed.instances[0]

    def restart() -> None:
        bed.start("h1")

    data, (killed, restarted, _) = run_load(
        bed, [bed.url(h) for h in HOSTS], load, [(kill_at, victim.kill), (kill_at + down_for, restart)]
    )
    bounds = [("before", data["started"], killed), ("during", killed, restarted), ("after", restarted, data["ended"])]
    return ScenarioResult("kill", split(data["calls"], bounds), data["calls"], {"fault": killed, "heal": restarted})


def scenario_partition(bed: TestBed, load: Load, *, at: float = 3.0, seconds: float = 5.0) -> ScenarioResult:
    """Two hosts; h1's link down at ``at`` s for ``seconds`` s (its packets vanish), then up again."""
    for host in ("h1", "h2"):
        bed.start(host)
    data, (cut, healed, _) = run_load(
        bed,
        [bed.url("h1"), bed.url("h2")],
        load,
        [(at, lambda: bed.link("h1", up=False)), (at + seconds, lambda: bed.link("h1", up=True))],
    )
    bounds = [("before", data["started"], cut), ("during", cut, healed), ("after", healed, data["ended"])]
    return ScenarioResult("partition", split(data["calls"], bounds), data["calls"], {"fault": cut, "heal": healed})


def scenario_rolling(bed: TestBed, load: Load, *, first: float = 2.0, every: float = 3.0) -> ScenarioResult:
    """Three hosts restarted one after the other: SIGTERM (drain), wait for the exit, start again; the next one
    ``every`` seconds after the previous began (or as soon as it serves again, when that takes longer)."""
    for host in HOSTS:
        bed.start(host)
    instances = {instance.host: instance for instance in bed.instances}

    def restart(host: str) -> Callable[[], None]:
        def action() -> None:
            old = instances[host]
            old.terminate()
            if old.wait(30.0) is None:
                raise RuntimeError(f"{host} did not stop within 30 s of SIGTERM")
            instances[host] = bed.start(host)

        return action

    actions = [(first + i * every, restart(host)) for i, host in enumerate(HOSTS)]
    data, times = run_load(bed, [bed.url(h) for h in HOSTS], load, actions)
    end_of_restarts = times[-1]  # the last instance serves again
    bounds = [("before", data["started"], times[0]), ("during", times[0], end_of_restarts)]
    bounds.append(("after", end_of_restarts, data["ended"]))
    return ScenarioResult("rolling", split(data["calls"], bounds), data["calls"], {"fault": times[0]})


def _table(results: Sequence[ScenarioResult], load: Load) -> str:
    lines = [
        f"| scenario ({load.threads} client threads) | before: calls/s, p99 | during | after | slowest call "
        "| failed calls |",
        "|---|---|---|---|---|---|",
    ]
    for result in results:
        cells = [f"{p.rate:,.0f}, {p.p99 * 1000:.1f} ms" for p in result.phases]
        reasons = Counter(_short_reason(call[3]) for call in result.failures)
        failed = "; ".join(f"{count} x {reason}" for reason, count in reasons.most_common(4)) or "0"
        worst = max((p.worst for p in result.phases), default=0.0)
        lines.append(f"| {result.name} | {' | '.join(cells)} | {worst:.2f} s | {failed} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--duration", type=float, default=12.0)
    parser.add_argument("--scenarios", default="kill,partition,rolling")
    parser.add_argument("--keepalive", type=float, default=30.0, help="the client's Timeout.keepalive")
    parser.add_argument("--json", help="also write every phase as JSON here")
    options = parser.parse_args(argv)
    reason = unavailable_reason()
    if reason:
        print(f"skipped: {reason}", file=sys.stderr)
        return 1
    remove_stale_beds()
    load = Load(threads=options.threads, duration=options.duration, extra=("--keepalive", str(options.keepalive)))
    runners = {"kill": scenario_kill, "partition": scenario_partition, "rolling": scenario_rolling}
    results = []
    with tempfile.TemporaryDirectory(prefix="rpcf-bed-") as workdir, TestBed(Path(workdir)) as bed:
        for name in options.scenarios.split(","):
            results.append(runners[name](bed, load))
            bed.reset()
            for phase in results[-1].phases:
                print(f"{name} {phase.row()}", file=sys.stderr)
    print(_table(results, load))
    if options.json:
        phases = {r.name: [{**vars(p), "rate": p.rate} for p in r.phases] for r in results}
        Path(options.json).write_text(json.dumps(phases, indent=2, default=dict))
    return 0


if __name__ == "__main__":
    sys.exit(main())
