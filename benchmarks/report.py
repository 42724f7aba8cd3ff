"""The results as a text table and as ``docs/performance.md`` (regenerated from the JSON; never edited by hand).

    .venv/bin/python -m benchmarks.report [benchmarks/results/latest.json] [docs/performance.md]

The hand-written analysis lives in ``benchmarks/notes/*.md`` (``in_place_and_traced.md``, ``one_path.md``,
``compiled_core.md``,
``where_the_time_goes.md``, ``dirac_mode.md``, then ``concurrency_transfer_idle.md`` and ``observability.md``) and
is copied into the page as it is.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["format_table", "markdown", "write_markdown"]

ROOT = Path(__file__).resolve().parent.parent
NOTES = (
    ROOT / "benchmarks" / "notes" / "in_place_and_traced.md",
    ROOT / "benchmarks" / "notes" / "one_path.md",
    ROOT / "benchmarks" / "notes" / "compiled_core.md",
    ROOT / "benchmarks" / "notes" / "where_the_time_goes.md",
    ROOT / "benchmarks" / "notes" / "dirac_mode.md",
    ROOT / "benchmarks" / "notes" / "concurrency_transfer_idle.md",
    ROOT / "benchmarks" / "notes" / "observability.md",
)
_COLUMNS = ("case", "calls/s (median)", "min", "max", "spread", "p50 µs", "p99 µs", "client CPU µs", "vs floor")


_MIB = 1024 * 1024
_THROUGHPUT_COLUMNS = ("case", "MiB/s (median)", "min", "max", "s per 256 MiB (p50)", "transfers", "vs floor")
_IDLE_COLUMNS = ("case", "connections", "server RSS before", "after", "after the calls", "per connection", "opened in")


def _floor(entry: dict[str, Any]) -> str:
    ratio = entry.get("ratio_to_floor")
    return f"{ratio:.2f} x {entry['floor']}" if ratio is not None else ("—" if entry["floor"] is None else "n/a")


def _error_row(name: str, entry: dict[str, Any], width: int) -> tuple[str, ...]:
    return (name, "error: " + str(entry["error"])[:60], *[""] * (width - 2))


def _rows(report: dict[str, Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for name, entry in report["cases"].items():
        if entry.get("kind") == "throughput":
            continue
        if "error" in entry:
            rows.append((name, "error: " + str(entry["error"])[:60], *[""] * (len(_COLUMNS) - 2)))
            continue
        rate = entry["calls_per_s"]
        floor = _floor(entry)
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


def _throughput_rows(report: dict[str, Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for name, entry in report["cases"].items():
        if entry.get("kind") != "throughput":
            continue
        if "error" in entry:
            rows.append(_error_row(name, entry, len(_THROUGHPUT_COLUMNS)))
            continue
        per_call = entry["bytes_per_call"] / _MIB
        rate = entry["calls_per_s"]
        rows.append(
            (
                name,
                f"{rate['median'] * per_call:,.0f}",
                f"{rate['min'] * per_call:,.0f}",
                f"{rate['max'] * per_call:,.0f}",
                f"{entry['p50_us'] / 1e6:.2f}",
                f"{entry['calls']}",
                _floor(entry),
            )
        )
    return rows


def _idle_rows(report: dict[str, Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for name, entry in report["cases"].items():
        if entry.get("kind") != "idle":
            continue
        extras = entry.get("extras")
        if "error" in entry or not extras:
            rows.append(_error_row(name, {"error": entry.get("error", "no memory figures")}, len(_IDLE_COLUMNS)))
            continue
        rows.append(
            (
                name,
                f"{extras['idle_connections']:,}",
                f"{extras['server_rss_before_mib']:.1f} MiB",
                f"{extras['server_rss_after_mib']:.1f} MiB",
                f"{extras['server_rss_after_calls_mib']:.1f} MiB",
                f"{extras['kib_per_connection']:.0f} KiB",
                f"{extras['open_seconds']:.1f} s",
            )
        )
    return rows


def _goal_rows(report: dict[str, Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for goal in report.get("goals", []):
        met = {True: "met", False: "**missed**", None: "n/a"}[goal["met"]]
        versus = f" vs `{goal['versus']}`" if goal.get("versus") else ""
        rows.append((goal["goal"], f"`{goal['case']}`{versus}", goal["detail"], met))
    return rows


def _fixed_width(columns: tuple[str, ...], body: list[tuple[str, ...]]) -> list[str]:
    rows = [columns, *body]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = [
        "  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return lines


def format_table(report: dict[str, Any]) -> str:
    """Fixed-width tables for the terminal."""
    lines = _fixed_width(_COLUMNS, _rows(report))
    for columns, body in ((_THROUGHPUT_COLUMNS, _throughput_rows(report)), (_IDLE_COLUMNS, _idle_rows(report))):
        if body:
            lines += ["", *_fixed_width(columns, body)]
    goals = [(goal, met, detail) for goal, _, detail, met in _goal_rows(report)]
    if goals:
        lines += ["", *_fixed_width(("goal", "met", "measured"), [(g, m.strip("*"), d) for g, m, d in goals])]
    return "\n".join(lines)


def _md(columns: tuple[str, ...], body: list[tuple[str, ...]], *, code_first: bool = True) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(["---", *["---:"] * (len(columns) - 1)]) + "|"]
    return lines + ["| " + " | ".join((f"`{row[0]}`" if code_first else row[0], *row[1:])) + " |" for row in body]


def _markdown_table(report: dict[str, Any]) -> list[str]:
    lines = _md(_COLUMNS, _rows(report))
    throughput, idle = _throughput_rows(report), _idle_rows(report)
    if throughput:
        lines += ["", *_md(_THROUGHPUT_COLUMNS, throughput)]
    if idle:
        lines += ["", *_md(_IDLE_COLUMNS, idle)]
    lines += ["", "| case | what one call is |", "|---|---|"]
    lines += [f"| `{name}` | {entry['description']} |" for name, entry in report["cases"].items()]
    return lines


def _goals_table(report: dict[str, Any]) -> list[str]:
    rows = _goal_rows(report)
    if not rows:
        return []
    header = ("goal", "cases", "measured", "")
    lines = ["## Goals", "", "| " + " | ".join(header) + " |", "|---|---|---:|---|"]
    return [*lines, *["| " + " | ".join(row) + " |" for row in rows], ""]


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
./bench                                   # every case, 2 rounds (about 3-4 minutes); sets up .venv like ./demo
./bench --quick                           # about 1 minute: one round, shorter warm-up, 3 repetitions of 0.5 s
./bench --cases raw_ssl_echo,rpc_reused   # a subset (./bench --list names them)
.venv/bin/python -m benchmarks.profiling  # cProfile of rpc_reused, client and server side
.venv/bin/python -m benchmarks.instructions --callgrind  # instructions per call, both sides: counted, not timed
.venv/bin/python -m benchmarks.new_connections --callgrind  # the same per new DIRAC-mode connection, rpc and floor
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
  `rpc_new_connection`, which resumes TLS sessions by default, and `rpc_new_connection_full` vs
  `raw_pyopenssl_connect_echo`, full handshakes; `rpc_plain_reused` vs `raw_tcp_echo`). 1.00 would mean the RPC
  layer costs nothing. The goals table also compares the new-connection cases like for like (both resuming, both
  with full handshakes).
- **Concurrent cases** (`_32`): 32 client threads in one client process, each with its own connection (its own
  `Client`, raw socket or gRPC channel), connected before the clock starts; calls/s is every call completed in a
  repetition's window by all threads, p50/p99 over all of them. Why one process: see the notes below.
- **Transfers** (second table): one 256 MiB transfer per repetition, 2 repetitions, one round (the page cache holds
  the file); MiB/s = 256 / seconds per transfer, including connect and handshake. **vs floor** compares with
  `raw_tls_bulk`, the same amount through the same TLS stream with no protocol at all.
- **Idle connections** (third table): the server process's `VmRSS` (`/proc/<pid>/status`) before and after
  1,000 idle connections were opened; the `idle_1000` row of the first table is the calls another `Client`
  made meanwhile (its floor is `rpc_reused`, measured with no idle connection).
- **Goals** compare medians of two cases of the same run; "met" holds for this run only.
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
        *_goals_table(report),
        "## How to run",
        "",
        _HOW_TO_RUN,
        "",
        "## How to read",
        "",
        _HOW_TO_READ,
        "",
    ]
    parts += [note.read_text().rstrip() + "\n" for note in NOTES if note.exists()]
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
