"""The performance goals, checked against a run's results (``report["goals"]``, shown in docs/performance.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["GOALS", "IDLE_RSS_LIMIT_MIB", "evaluate_goals"]

#: idle_1000: the server's RSS with 1,000 idle connections must stay under this.
IDLE_RSS_LIMIT_MIB = 150.0


@dataclass(frozen=True)
class RatioGoal:
    """``case`` must reach ``at_least`` x the calls/s (or MiB/s) of ``versus``."""

    goal: str
    case: str
    versus: str
    at_least: float


#: The goals of issue 20 ("the steady-state call path"), each the ratio of two cases' medians in the same run.
GOALS = (
    RatioGoal(
        "reused connection, 1 client >= 0.75 x raw TLS echo (pyOpenSSL)", "rpc_reused", "raw_pyopenssl_echo", 0.75
    ),
    RatioGoal("reused connection, 1 client >= 1.5 x RPyC", "rpc_reused", "rpyc_echo", 1.5),
    RatioGoal("32 clients >= 0.8 x raw TLS, thread per connection", "rpc_reused_32", "raw_ssl_echo_32", 0.8),
    RatioGoal("32 clients >= 3 x gRPC", "rpc_reused_32", "grpc_unary_32", 3.0),
    RatioGoal(
        "DIRAC mode (new connection per call, resumed) >= 1.0 x raw resumed connect + echo",
        "rpc_new_connection",
        "raw_pyopenssl_connect_resumed_echo",
        1.0,
    ),
    RatioGoal("upload 256 MiB (CRC-32) >= 0.8 x raw TLS bulk", "transfer_256mib_up", "raw_tls_bulk", 0.8),
    RatioGoal("download 256 MiB (CRC-32) >= 0.8 x raw TLS bulk", "transfer_256mib_down", "raw_tls_bulk", 0.8),
    RatioGoal("metrics on: reused connection >= 0.95 x metrics off", "rpc_reused_metrics", "rpc_reused", 0.95),
    RatioGoal(
        "tracing on (1% of calls sampled): reused connection >= 0.95 x tracing off",
        "rpc_reused_tracing_sampled",
        "rpc_reused",
        0.95,
    ),
    RatioGoal(
        "tracing on (every call sampled): reused connection >= 0.95 x tracing off",
        "rpc_reused_tracing",
        "rpc_reused",
        0.95,
    ),
    # Issue 16: the asyncio client.
    RatioGoal("asyncio, one task, reused connection >= 1 x the blocking Client", "rpc_async_reused", "rpc_reused", 1.0),
    RatioGoal("asyncio, 1,000 calls in flight on one loop >= 2 x grpc.aio", "rpc_async_1000", "grpc_aio_1000", 2.0),
)


def _median(entry: dict[str, Any] | None) -> float | None:
    if not entry or "calls_per_s" not in entry:
        return None
    value = entry["calls_per_s"]["median"]
    return float(value) if value else None


def _ratio_goal(goal: RatioGoal, cases: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    if goal.case not in cases or goal.versus not in cases:
        return None
    ours, theirs = _median(cases[goal.case]), _median(cases[goal.versus])
    out: dict[str, Any] = {"goal": goal.goal, "case": goal.case, "versus": goal.versus, "target": goal.at_least}
    if ours is None or theirs is None:
        return {**out, "measured": None, "met": None, "detail": "a case failed"}
    ratio = ours / theirs
    return {**out, "measured": ratio, "met": ratio >= goal.at_least, "detail": f"{ratio:.2f} x"}


def _idle_goal(cases: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    entry = cases.get("idle_1000")
    if entry is None:
        return None
    out: dict[str, Any] = {
        "goal": f"1,000 idle connections: server RSS < {IDLE_RSS_LIMIT_MIB:g} MiB, new calls answered",
        "case": "idle_1000",
        "versus": None,
        "target": IDLE_RSS_LIMIT_MIB,
    }
    extras = entry.get("extras") or {}
    rss = extras.get("server_rss_after_mib")
    if "error" in entry or rss is None:
        return {**out, "measured": None, "met": False, "detail": f"failed: {entry.get('error', 'no RSS')}"[:120]}
    answered = entry.get("calls", 0) > 0
    detail = f"{rss:.0f} MiB; {entry['calls']:,} calls answered, p99 {entry['p99_us']:,.0f} µs"
    return {**out, "measured": rss, "met": rss < IDLE_RSS_LIMIT_MIB and answered, "detail": detail}


def evaluate_goals(cases: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each goal whose cases ran: the measured figure and whether it is met (``None``: a case failed)."""
    results = [_ratio_goal(goal, cases) for goal in GOALS]
    results.append(_idle_goal(cases))
    return [result for result in results if result is not None]
