"""Timing and statistics: warm-up, then R repetitions of a fixed duration, each call timed on its own.

Runs inside the client process. What comes back to the runner is small: the rate of each repetition and the
latency percentiles over every measured call (in microseconds).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Plan", "combine", "drive", "percentile", "summarize"]


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


def combine(outcomes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Merge the :func:`drive` results of several rounds of one case into the figures the report shows."""
    rates = [rate for outcome in outcomes for rate in outcome["rates"]]
    samples = [sample for outcome in outcomes for sample in outcome["samples"]]
    cpu = sum(outcome["cpu_seconds"] for outcome in outcomes)
    return {
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
