"""cProfile of one case on both sides: the client process and every thread of the server process.

    .venv/bin/python -m benchmarks.profiling                       # rpc_reused, 5000 measured calls
    .venv/bin/python -m benchmarks.profiling --case rpc_plain_reused --calls 3000

Profiles use each thread's CPU clock (``time.thread_time``): time spent blocked (waiting for the peer, for the
selector, for a queue) is not counted, so the numbers say where each side burns CPU per call. The per-call
figures are the totals divided by the number of calls the client made. Writes the raw ``.prof`` files and a text
summary (``benchmarks/results/profile_<case>.txt``).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

__all__ = ["profile_all_threads", "profile_current_thread"]

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def profile_current_thread(out: Path) -> Iterator[None]:
    """Profile the calling thread (CPU time) while the block runs; dump to ``out``."""
    profile = cProfile.Profile(time.thread_time)
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        profile.dump_stats(str(out))


@contextmanager
def profile_all_threads(out: Path) -> Iterator[None]:
    """Profile every thread started inside the block and dump the merged stats to ``out``.

    The calling thread is left out: in a server process it only imports, loads credentials and waits, which would
    blur the per-call figures. ``threading.Thread.run`` is wrapped for the duration: benchmark processes only.
    """
    profiles: list[cProfile.Profile] = []
    original_run = threading.Thread.run

    def profiled_run(thread: threading.Thread) -> None:
        profile = cProfile.Profile(time.thread_time)
        profiles.append(profile)
        profile.enable()
        try:
            original_run(thread)
        finally:
            profile.disable()

    threading.Thread.run = profiled_run  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        threading.Thread.run = original_run  # type: ignore[method-assign]
        stats: pstats.Stats | None = None
        for profile in list(profiles):
            try:
                if stats is None:
                    stats = pstats.Stats(profile)
                else:
                    stats.add(profile)
            except TypeError:  # a thread that never recorded anything
                continue
        if stats is not None:
            stats.dump_stats(str(out))


def _top(path: Path, calls: int, *, limit: int) -> str:
    buffer = io.StringIO()
    stats = pstats.Stats(str(path), stream=buffer)
    stats.strip_dirs()
    total = stats.total_tt  # type: ignore[attr-defined]
    buffer.write(f"total CPU {total:.3f} s over {calls} calls = {1e6 * total / max(calls, 1):.1f} µs/call\n")
    stats.sort_stats("tottime").print_stats(limit)
    stats.sort_stats("cumulative").print_stats(limit)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    from benchmarks.cases import CASES
    from benchmarks.common import payload_path
    from benchmarks.measure import Plan
    from benchmarks.run import make_ca, make_payload, run_case

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", default="rpc_reused")
    parser.add_argument("--calls", type=int, default=5000, help="measured calls (after a 0.5 s warm-up)")
    parser.add_argument("--limit", type=int, default=30, help="rows per listing")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    plan = Plan(warmup=0.5, repetitions=1, duration=120.0, max_calls=args.calls)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rpcframework-profile-") as scratch:
        ca = make_ca(Path(scratch) / "ca")
        if CASES[args.case].needs_payload:  # the transfer cases read a 256 MiB file
            make_payload(payload_path(ca))
        outcome: dict[str, Any] = run_case(args.case, ca, plan, profile_dir=args.out)
    if "error" in outcome:
        print(f"{args.case}: {outcome['error']}", file=sys.stderr)
        return 1
    calls = len(outcome["samples"]) + int(outcome["warmup_calls"])  # the profiles cover the warm-up too
    rate = outcome["rates"][0]
    sections = [f"# cProfile of {args.case}: {calls} calls (warm-up included), {rate:.0f} calls/s while profiled\n"]
    for side in ("client", "server"):
        path = args.out / f"{args.case}.{side}.prof"
        sections.append(f"\n## {side}\n\n{_top(path, calls, limit=args.limit)}")
    summary = args.out / f"profile_{args.case}.txt"
    summary.write_text("".join(sections))
    print(f"wrote {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
