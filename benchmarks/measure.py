"""Timing and statistics: warm-up, then R repetitions of a fixed duration, each call timed on its own.

Runs inside the client process. What comes back to the runner is small: the rate of each repetition and the
latency percentiles over every measured call (in microseconds).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Plan", "combine", "drive", "drive_concurrent", "percentile", "summarize"]


@dataclass(frozen=True)
class Plan:
    """How long to measure: ``warmup`` seconds discarded, then ``repetitions`` x ``duration`` seconds; each
    repetition also stops after ``max_calls`` calls."""

    warmup: float = 1.0
    repetitions: int = 5
    duration: float = 2.0
    max_calls: int = 10_000_000

    def budget(self) -> float:
        """Seconds the client should need, generously (the runner's give-up limit)."""
        return 30.0 + 3.0 * (self.warmup + self.repetitions * self.duration)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _timed(call: Callable[[], None], duration: float, max_calls: int, samples: list[float] | None) -> tuple[int, float]:
    """Call repeatedly for ``duration`` seconds (at most ``max_calls`` times); (calls, calls per second)."""
    clock = time.perf_counter
    start = now = clock()
    end = start + duration
    count = 0
    for count in range(1, max_calls + 1):  # noqa: B007 - count is used after the loop
        before = now
        call()
        now = clock()
        if samples is not None:
            samples.append(now - before)
        if now >= end:
            break
    return count, (count / (now - start) if now > start else 0.0)


def drive(call: Callable[[], None], plan: Plan) -> dict[str, Any]:
    """Warm up, then measure: the rate of each repetition, every measured call's latency (seconds), and the
    client process's CPU time over the measured calls (user + system, all its threads)."""
    warmup_calls, _ = _timed(call, plan.warmup, plan.max_calls, None) if plan.warmup > 0 else (0, 0.0)
    rates: list[float] = []
    samples: list[float] = []
    cpu_start = time.process_time()
    for _ in range(plan.repetitions):
        rates.append(_timed(call, plan.duration, plan.max_calls, samples)[1])
    cpu = time.process_time() - cpu_start
    return {"rates": rates, "warmup_calls": warmup_calls, "cpu_seconds": cpu, "samples": samples}


class _Windows:
    """The shared clock of a concurrent run: warm-up until ``start``, then ``repetitions`` windows of
    ``duration`` seconds; a call counts in the window in which it completed."""

    def __init__(self, plan: Plan, start: float) -> None:
        self.start = start
        self.duration = max(plan.duration, 1e-3)
        self.repetitions = plan.repetitions
        self.end = start + self.duration * plan.repetitions
        self.stop = threading.Event()
        self.errors: list[BaseException] = []

    def run(self, call: Callable[[], None], max_calls: int, counts: list[int], samples: list[float]) -> None:
        clock = time.perf_counter
        try:
            for _ in range(max_calls):
                before = clock()
                call()
                now = clock()
                if now >= self.start:
                    index = int((now - self.start) / self.duration)
                    if index < self.repetitions:
                        counts[index] += 1
                        samples.append(now - before)
                if now >= self.end or self.stop.is_set():
                    return
        except BaseException as exc:  # any failure ends the whole run; the caller re-raises it
            self.errors.append(exc)
            self.stop.set()


def drive_concurrent(calls: Sequence[Callable[[], None]], plan: Plan) -> dict[str, Any]:
    """Like :func:`drive` with one thread per element of ``calls``, all calling at once: warm-up, then
    ``plan.repetitions`` windows of ``plan.duration`` seconds on a shared clock. The rate of a window is every
    call that completed in it (all threads) divided by its length; latencies are every such call's."""
    windows = _Windows(plan, time.perf_counter() + 0.05 + plan.warmup)
    counts = [[0] * plan.repetitions for _ in calls]
    samples: list[list[float]] = [[] for _ in calls]
    threads = [
        threading.Thread(target=windows.run, args=(call, plan.max_calls, counts[i], samples[i]), daemon=True)
        for i, call in enumerate(calls)
    ]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, windows.start - time.perf_counter()))
    cpu_start = time.process_time()
    limit = time.monotonic() + (windows.end - time.perf_counter()) + 60.0
    for thread in threads:
        thread.join(max(0.0, limit - time.monotonic()))
    cpu = time.process_time() - cpu_start
    windows.stop.set()
    if windows.errors:
        raise windows.errors[0]
    if any(thread.is_alive() for thread in threads):
        raise TimeoutError("a client thread did not finish within 60 s of the end of the run")
    rates = [sum(row[index] for row in counts) / windows.duration for index in range(plan.repetitions)]
    merged = [value for part in samples for value in part]
    return {"rates": rates, "warmup_calls": 0, "cpu_seconds": cpu, "samples": merged}


def combine(outcomes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Merge the :func:`drive` results of several rounds of one case into the figures the report shows."""
    rates = [rate for outcome in outcomes for rate in outcome["rates"]]
    samples = [sample for outcome in outcomes for sample in outcome["samples"]]
    cpu = sum(outcome["cpu_seconds"] for outcome in outcomes)
    extras = next((outcome["extras"] for outcome in reversed(outcomes) if outcome.get("extras")), None)
    return {
        **({"extras": extras} if extras else {}),
        "rates": rates,
        "calls_per_s": summarize(rates),
        "client_cpu_us": 1e6 * cpu / len(samples) if samples else 0.0,
        **latency_summary(samples),
    }


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (``fraction`` in [0, 1])."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(fraction * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


def latency_summary(samples: list[float]) -> dict[str, Any]:
    ordered = sorted(samples)
    return {
        "calls": len(ordered),
        "p50_us": percentile(ordered, 0.50) * 1e6,
        "p99_us": percentile(ordered, 0.99) * 1e6,
        "mean_us": statistics.fmean(ordered) * 1e6 if ordered else 0.0,
    }


def summarize(rates: Sequence[float]) -> dict[str, float]:
    """Median, min, max and interquartile range of the per-repetition rates."""
    ordered = sorted(rates)
    if not ordered:
        return {"median": 0.0, "min": 0.0, "max": 0.0, "iqr": 0.0, "spread_pct": 0.0}
    median = statistics.median(ordered)
    if len(ordered) >= 2:
        quartiles = statistics.quantiles(ordered, n=4, method="inclusive")
        iqr = quartiles[2] - quartiles[0]
    else:
        iqr = 0.0
    spread = 100.0 * (ordered[-1] - ordered[0]) / median if median else 0.0
    return {"median": median, "min": ordered[0], "max": ordered[-1], "iqr": iqr, "spread_pct": spread}
