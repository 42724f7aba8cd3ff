"""The results as a text table and as ``docs/performance.md`` (regenerated from the JSON; never edited by hand).

    .venv/bin/python -m benchmarks.report [benchmarks/results/latest.json] [docs/performance.md]

The hand-written analysis ("Where the time goes") lives in ``benchmarks/notes/where_the_time_goes.md`` and is
copied into the page as it is.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["format_table", "markdown", "write_markdown"]

ROOT = Path(__file__).resolve().parent.parent
NOTES = ROOT / "benchmarks" / "notes" / "where_the_time_goes.md"
_COLUMNS = ("case", "calls/s (median)", "min", "max", "spread", "p50 µs", "p99 µs", "client CPU µs", "vs floor")


def _rows(report: dict[str, Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for name, entry in report["cases"].items():
        if "error" in entry:
            rows.append((name, "error: " + str(entry["error"])[:60], *[""] * (len(_COLUMNS) - 2)))
            continue
        rate = entry["calls_per_s"]
        ratio = entry.get("ratio_to_floor")
        floor = f"{ratio:.2f} x {entry['floor']}" if ratio is not None else ("—" if entry["floor"] is None else "n/a")
        rows.append(
            (
                name,
                f"{rate['median']:,.0f}",
                f"{rate['min']:,.0f}",
                f"{rate['max']:,.0f}",
                f"±{rate['spread_pct'] / 2:.1f}%",
                f"{entry['p50_us']:,.0f}",
                f"{entry['p99_us']:,.0f}",
                f"{entry.get('client_cpu_us', 0.0):,.0f}",
                floor,
            )
        )
    return rows


def format_table(report: dict[str, Any]) -> str:
    """A fixed-width table for the terminal."""
    rows = [_COLUMNS, *_rows(report)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = [
        "  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _markdown_table(report: dict[str, Any]) -> list[str]:
    lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + "|".join(["---", *["---:"] * (len(_COLUMNS) - 1)]) + "|"]
    lines += ["| " + " | ".join((f"`{row[0]}`", *row[1:])) + " |" for row in _rows(report)]
    lines += ["", "| case | what one call is |", "|---|---|"]
    lines += [f"| `{name}` | {entry['description']} |" for name, entry in report["cases"].items()]
    return lines


def _dirty(machine: dict[str, Any]) -> str:
    count = machine.get("uncommitted_library_files")
    return f" plus uncommitted edits to {count} library files" if count else ""


def _machine(report: dict[str, Any]) -> list[str]:
    m = report["machine"]
    plan = report["plan"]
    load = f"{m.get('load_average_before')} before, {m.get('load_average_after')} after"
    return [
        f"- date: {m['date']} (commit `{m['git_commit']}`{_dirty(m)})",
        f"- CPU: {m['cpu_model']}, `nproc` = {m['nproc']}; {m['platform']}",
        f"- Python {m['python']}; stdlib ssl: {m['openssl_stdlib']}",
        f"- pyOpenSSL {m['pyopenssl']} ({m['pyopenssl_openssl']}); M2Crypto {m['m2crypto']}",
        f"- load average (1, 5, 15 min): {load}",
        f"- CPU speed probe (a fixed Python loop, ms, lower is faster): {m.get('python_loop_ms_before')} before,"
        f" {m.get('python_loop_ms_after')} after",
        f"- plan: per case {plan['warmup']:g} s warm-up, then {plan['repetitions']} repetitions of"
        f" {plan['duration']:g} s; every case run {plan.get('rounds', 1)} time(s), round-robin",
    ]


_HOW_TO_RUN = """\
```bash
./bench                                   # every case, 2 rounds (about 2 minutes); sets up .venv like ./demo
./bench --quick                           # about 30 s: one round, shorter warm-up, 3 repetitions of 0.6 s
./bench --cases raw_ssl_echo,rpc_reused   # a subset (./bench --list names them)
.venv/bin/python -m benchmarks.profiling  # cProfile of rpc_reused, client and server side
```

Each run writes `benchmarks/results/latest.json` and regenerates this page from it."""

_HOW_TO_READ = """\
- Every case runs a server process and a client process (spawned interpreters, so no shared GIL), on 127.0.0.1,
  with a dev CA made for the run. The client warms up, then runs the repetitions; one call = one round trip
  (or connect + handshake + one round trip for the `connect`/`new_connection` cases).
- **calls/s** is the median over every repetition of every round; **min**/**max** are the slowest and fastest
  repetition and **spread** is half their distance relative to the median. **p50/p99** are latency percentiles
  over every measured call (one client thread, so latency ≈ 1 / rate plus the tail). **client CPU** is the client
  process's CPU time (user + system) per measured call; the rest of a call's latency is the server's CPU, the
  kernel and the wake-ups in between.
- **vs floor** is the headline figure: the case's median divided by the median of the raw case that does the same
  I/O without rpcframework (`rpc_reused` vs `raw_pyopenssl_echo`, the same TLS stream rpcframework uses;
  `rpc_new_connection` vs `raw_pyopenssl_connect_echo`; `rpc_plain_reused` vs `raw_tcp_echo`). 1.00 would mean the RPC
  layer costs nothing.
- Absolute numbers vary a lot between machines (CPU, kernel, OpenSSL build) and with whatever else runs; compare
  ratios, and compare absolute numbers only between runs on the same machine. The CPU speed probe is taken before
  and after the run: when the two differ much, the machine's speed changed during the run (shared or throttled
  virtual CPUs) and the ratios are less trustworthy; rerun."""


def markdown(report: dict[str, Any]) -> str:
    note = report.get("note") or ""
    parts = [
        "# Performance",
        "",
        "<!-- Generated by benchmarks/report.py from benchmarks/results/latest.json; do not edit by hand. -->",
        "",
        "What rpcframework costs on top of the raw transport, measured by `./bench`.",
        "",
        "## Results",
        "",
        *_machine(report),
        *([f"- note: {note}"] if note else []),
        "",
        *_markdown_table(report),
        "",
        "## How to run",
        "",
        _HOW_TO_RUN,
        "",
        "## How to read",
        "",
        _HOW_TO_READ,
        "",
    ]
    if NOTES.exists():
        parts += [NOTES.read_text().rstrip(), ""]
    return "\n".join(parts)


def write_markdown(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown(report))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    source = Path(args[0]) if args else ROOT / "benchmarks" / "results" / "latest.json"
    target = Path(args[1]) if len(args) > 1 else ROOT / "docs" / "performance.md"
    report = json.loads(source.read_text())
    write_markdown(report, target)
    print(format_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
