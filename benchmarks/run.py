"""Benchmark runner: each case in a server process and a client process, the results as a table, JSON and docs.

    ./bench                                   # every case, ~3-4 minutes (sets up .venv first)
    ./bench --quick                           # ~1 minute, fewer and shorter repetitions
    ./bench --cases raw_ssl_echo,rpc_reused   # a subset
    .venv/bin/python -m benchmarks.run --list

Per case: a dev CA made once per run (temporary directory), a server process bound to 127.0.0.1, a client process
(both ``multiprocessing`` spawn: separate interpreters, no shared GIL) that warms up, then runs ``--repetitions``
repetitions of ``--duration`` seconds each and times every call. Reported: calls/s median over the repetitions,
their spread (min/max, IQR), and p50/p99 latency over all measured calls; rpc cases also as a ratio to their raw
floor. Writes ``benchmarks/results/latest.json`` and regenerates ``docs/performance.md`` from it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable (the children inherit sys.path)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.cases import CASES
from benchmarks.common import PAYLOAD_SIZE, Caller, payload_path
from benchmarks.goals import evaluate_goals
from benchmarks.machine import ROOT, describe_machine, load_average, python_loop_ms
from benchmarks.measure import Plan, combine, drive, drive_concurrent
from benchmarks.report import format_table, write_markdown

DEFAULT_JSON = ROOT / "benchmarks" / "results" / "latest.json"
DEFAULT_MARKDOWN = ROOT / "docs" / "performance.md"
_READY_TIMEOUT = 60.0
_JOIN_TIMEOUT = 5.0

#: (plan, rounds): the default takes about 3-4 minutes for every case, --quick about 1 minute (the transfer and
#: idle cases have their own plans: see benchmarks/transfer_cases.py and benchmarks/idle_case.py).
PLANS = {
    "default": (Plan(warmup=0.8, repetitions=3, duration=1.2), 2),
    "quick": (Plan(warmup=0.25, repetitions=3, duration=0.5), 1),
}


# -- child processes ----------------------------------------------------------------------------------------------


def server_main(name: str, ca: str, control: Connection, profile: str | None = None) -> None:
    """Server process: serve case ``name`` until told to stop."""
    if profile is None:
        CASES[name].serve(Path(ca), control)
        return
    from benchmarks.profiling import profile_all_threads

    with profile_all_threads(Path(profile)):
        CASES[name].serve(Path(ca), control)


@dataclass(frozen=True)
class ClientJob:
    """What a client process needs (picklable: it crosses the spawn boundary)."""

    name: str
    ca: str
    address: str
    plan: Plan
    profile: str | None = None


def _measure(callers: list[Caller], job: ClientJob) -> dict[str, Any]:
    measure = getattr(callers[0], "measure", None)
    if measure is not None and job.profile is None:  # an asyncio caller: it times its calls inside its own loop
        callers[0].call()  # connect first, as the other callers do
        result: dict[str, Any] = measure(job.plan)
        return result
    if len(callers) > 1:
        for caller in callers:  # connect each one first (as the raw and gRPC callers do in their constructor)
            caller.call()
        return drive_concurrent([caller.call for caller in callers], job.plan)
    if job.profile is None:
        return drive(callers[0].call, job.plan)
    from benchmarks.profiling import profile_current_thread

    with profile_current_thread(Path(job.profile)):
        return drive(callers[0].call, job.plan)


def client_main(job: ClientJob, results: Connection) -> None:
    """Client process: connect (one caller per client thread), measure, send the measurements (or the error)
    back; a caller with an ``extras()`` method adds what it returns (after the measurement)."""
    case = CASES[job.name]
    callers: list[Caller] = []
    try:
        try:
            for _ in range(case.threads):
                callers.append(case.client(Path(job.ca), job.address))
            outcome = _measure(callers, job)
            extras = getattr(callers[0], "extras", None)
            if extras is not None:
                outcome["extras"] = extras()
        finally:
            for caller in callers:
                caller.close()
    except Exception as exc:
        results.send({"error": f"{type(exc).__name__}: {exc}"})
        return
    results.send(outcome)


# -- the parent ---------------------------------------------------------------------------------------------------


def _stop(process: BaseProcess | None) -> None:
    if process is None or process.pid is None:
        return
    process.join(_JOIN_TIMEOUT)
    if process.is_alive():
        process.terminate()
        process.join(_JOIN_TIMEOUT)
    if process.is_alive():
        process.kill()
        process.join(_JOIN_TIMEOUT)


def _wait_message(pipe: Connection, process: BaseProcess, limit: float) -> bool:
    """Wait up to ``limit`` seconds for a message from ``process``; give up early if it died without one."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if pipe.poll(0.5):
            return True
        if not process.is_alive():
            return pipe.poll(0.5)
    return False


def run_case(name: str, ca: Path, plan: Plan, profile_dir: Path | None = None) -> dict[str, Any]:
    """One case: start its server, run its client, return the client's measurements (or ``{"error": ...}``)."""
    ctx = multiprocessing.get_context("spawn")
    control, server_end = ctx.Pipe()
    results, client_end = ctx.Pipe(duplex=False)
    profiles = (
        (str(profile_dir / f"{name}.server.prof"), str(profile_dir / f"{name}.client.prof"))
        if profile_dir
        else (None, None)
    )
    server = ctx.Process(target=server_main, args=(name, str(ca), server_end, profiles[0]), name=f"bench-server-{name}")
    client: BaseProcess | None = None
    try:
        server.start()
        if not _wait_message(control, server, _READY_TIMEOUT):
            return {"error": f"the server did not start (exit code {server.exitcode}, limit {_READY_TIMEOUT:g} s)"}
        address = control.recv()
        job = ClientJob(name, str(ca), address, plan, profiles[1])
        client = ctx.Process(target=client_main, args=(job, client_end), name=f"bench-client-{name}")
        client.start()
        budget = plan.budget() + CASES[name].setup_seconds
        if not _wait_message(results, client, budget):
            return {"error": f"the client gave no result (exit code {client.exitcode}, limit {budget:g} s)"}
        outcome: dict[str, Any] = results.recv()
        control.send("stop")
        return outcome
    except (EOFError, OSError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        _stop(client)
        _stop(server)


def run_cases(
    names: list[str], plan: Plan, ca: Path, *, rounds: int = 1, quick: bool = False, verbose: bool = True
) -> dict[str, dict[str, Any]]:
    """Run every case ``rounds`` times (or its own ``max_rounds``), round-robin (a slow spell on a shared machine
    then hits every case, not just one), and merge each case's rounds."""
    outcomes: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    errors: dict[str, str] = {}
    for index in range(rounds):
        for name in names:
            case = CASES[name]
            if name in errors or index >= case.rounds_for(rounds):
                continue
            if verbose:
                print(f"... round {index + 1}/{rounds}: {name}", file=sys.stderr, flush=True)
            outcome = run_case(name, ca, case.plan_for(plan, quick))
            if "error" in outcome:
                errors[name] = outcome["error"]
            else:
                outcomes[name].append(outcome)
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        case = CASES[name]
        entry: dict[str, Any] = {
            "description": case.description,
            "floor": case.floor,
            "kind": case.kind,
            "threads": case.threads,
            "bytes_per_call": case.bytes_per_call,
            "plan": {**case.plan_for(plan, quick).to_dict(), "rounds": case.rounds_for(rounds)},
        }
        entry.update({"error": errors[name]} if name in errors else combine(outcomes[name]))
        out[name] = entry
    for entry in out.values():
        floor = out.get(entry["floor"] or "", {})
        if "calls_per_s" in entry and "calls_per_s" in floor and floor["calls_per_s"]["median"]:
            entry["ratio_to_floor"] = entry["calls_per_s"]["median"] / floor["calls_per_s"]["median"]
    return out


def make_ca(directory: Path) -> Path:
    from rpcframework.security.devca import DevCA

    DevCA.init(directory)
    return directory


def make_payload(path: Path, size: int = PAYLOAD_SIZE) -> Path:
    """``size`` random bytes at ``path`` (written in 4 MiB pieces), for the transfer cases; fsynced, so the
    kernel's write-back of the new file does not run during the first measurement."""
    piece = 4 * 1024 * 1024
    with path.open("wb") as out:
        for offset in range(0, size, piece):
            out.write(os.urandom(min(piece, size - offset)))
        out.flush()
        os.fsync(out.fileno())
    return path


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", help=f"comma-separated subset of: {', '.join(CASES)}")
    parser.add_argument("--quick", action="store_true", help="shorter warm-up and repetitions (~1 minute in all)")
    parser.add_argument("--repetitions", type=int, help="measured repetitions per case")
    parser.add_argument("--duration", type=float, help="seconds per repetition")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up per case")
    parser.add_argument("--rounds", type=int, help="times every case runs, round-robin (default 2, --quick 1)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the results")
    parser.add_argument("--markdown", type=Path, default=DEFAULT_MARKDOWN, help="docs page to regenerate")
    parser.add_argument("--no-markdown", action="store_true", help="do not regenerate the docs page")
    parser.add_argument("--note", default="", help="a sentence about the run for the docs page")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    return parser.parse_args(argv)


def _plan(args: argparse.Namespace) -> tuple[Plan, int]:
    base, rounds = PLANS["quick" if args.quick else "default"]
    plan = Plan(
        warmup=base.warmup if args.warmup is None else args.warmup,
        repetitions=base.repetitions if args.repetitions is None else max(1, args.repetitions),
        duration=base.duration if args.duration is None else args.duration,
    )
    return plan, rounds if args.rounds is None else max(1, args.rounds)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.list:
        for case in CASES.values():
            print(f"{case.name:22s} {case.description}")
        return 0
    names = [n.strip() for n in args.cases.split(",") if n.strip()] if args.cases else list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        print(f"unknown case(s): {', '.join(unknown)}; known: {', '.join(CASES)}", file=sys.stderr)
        return 2
    plan, rounds = _plan(args)
    machine = describe_machine()
    with tempfile.TemporaryDirectory(prefix="rpcframework-bench-") as scratch:
        ca = make_ca(Path(scratch) / "ca")
        if any(CASES[name].needs_payload for name in names):
            make_payload(payload_path(ca))
        cases = run_cases(names, plan, ca, rounds=rounds, quick=args.quick)
    machine["load_average_after"] = load_average()
    machine["python_loop_ms_after"] = python_loop_ms()
    report = {"machine": machine, "plan": {**plan.to_dict(), "rounds": rounds}, "note": args.note, "cases": cases}
    report["goals"] = evaluate_goals(cases)
    print(format_table(report))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}", file=sys.stderr)
    if not args.no_markdown:
        write_markdown(report, args.markdown)
        print(f"wrote {args.markdown}", file=sys.stderr)
    return 1 if any("error" in entry for entry in cases.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
