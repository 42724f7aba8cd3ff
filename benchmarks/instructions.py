"""Instructions and CPU per call, counted rather than timed: a ``ServiceReactor`` and a ``Client`` in one process.

    .venv/bin/python -m benchmarks.instructions                      # CPU µs per call (process time), 5 x 2,000 calls
    .venv/bin/python -m benchmarks.instructions --callgrind          # instructions per call (valgrind, ~1 minute)
    .venv/bin/python -m benchmarks.instructions --protocol dip       # plain TCP: no TLS, the Python layers only
    .venv/bin/python -m benchmarks.instructions --client async       # the same calls through AsyncClient
    .venv/bin/python -m benchmarks.instructions --client async --tasks 100   # 100 tasks calling at once
    .venv/bin/python -m benchmarks.instructions --observe tracing_sampled --callgrind   # with observers

Wall-clock rates on a shared 2-core machine move by tens of percent from one run to the next; what one call costs
in CPU does not. Both sides run in this process (so their CPU adds up: client + server per call). ``--callgrind``
runs this module twice under ``valgrind --tool=callgrind`` (a few calls, then many more) and divides the difference
of the instruction counts by the difference of the calls: start-up, imports and the handshake cancel out; the
count of the main thread alone is the client's (``--separate-threads``).
Deterministic to a fraction of a percent between runs, whatever else the machine does.

The CPU figures are given twice: both sides (the process's CPU) and the client's alone (the CPU of the thread that
makes the calls: the blocking client's thread, or the thread running the asyncio client's event loop; the server
runs on its own threads). ``--client async`` makes the same calls with ``AsyncClient`` from one event loop: one
task after another, or ``--tasks N`` tasks calling at once (the counts are then calls in all); on uvloop's loop
with ``RPCFRAMEWORK_BENCH_LOOP=uvloop`` in the environment (uvloop installed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

__all__ = ["callgrind_counts", "main"]

TEXT = "x" * 100
_SMALL, _LARGE = 300, 1500


def _handler() -> type[Any]:
    from rpcframework.server import RequestHandler

    class Bench(RequestHandler):
        auth_echo: ClassVar[list[str]] = ["all"]

    return Bench


Counted = tuple[int, float, float]  # calls, process CPU s (both sides), client thread CPU s


def run_calls(
    ca: Path,
    protocol: str,
    counts: list[int],
    warmup: int = 200,
    *,
    client_kind: str = "sync",
    tasks: int = 1,
    observe: str | None = None,
) -> list[Counted]:
    """Serve in this process and make ``warmup`` calls, then each of ``counts`` calls in a row."""
    import logging

    from benchmarks.cases import client_observer, server_observer
    from rpcframework.client import Client
    from rpcframework.config import load_dict
    from rpcframework.server import Service, ServiceReactor
    from rpcframework.transports import TLSConfig

    logging.basicConfig(level=logging.WARNING)
    tls = TLSConfig(
        cert_file=str(ca / "hostcert.pem"), key_file=str(ca / "hostkey.pem"), ca_dir=str(ca / "certificates")
    )
    service = Service("Bench/Echo", _handler(), port=0, protocol=protocol)
    config = load_dict({"DIRAC": {"Security": {"CALocation": str(ca / "certificates")}}}, "<bench>")
    out: list[Counted] = []
    observed: dict[str, Any] = {} if observe is None else {"observer": server_observer(observe)}
    reactor = ServiceReactor([service], host="127.0.0.1", tls=tls if protocol == "dips" else None, **observed)
    if observe is not None:
        observed = {"observer": client_observer(observe)}
    with reactor as server:
        if client_kind == "async":
            options = {"proxyLocation": str(ca / "proxy.pem"), "config": config, **observed}
            return _run_async_calls(server.url("Bench/Echo"), options, counts, warmup, tasks)
        client = Client(server.url("Bench/Echo"), proxyLocation=str(ca / "proxy.pem"), config=config, **observed)
        echo = client.echo
        try:
            for _ in range(warmup):
                echo(TEXT)
            for count in counts:
                start, thread_start = time.process_time(), time.thread_time()
                for _ in range(count):
                    if echo(TEXT)["Value"] != TEXT:
                        raise RuntimeError("echo mismatch")
                out.append((count, time.process_time() - start, time.thread_time() - thread_start))
        finally:
            client.close()
    return out


def _run_async_calls(url: str, options: dict[str, Any], counts: list[int], warmup: int, tasks: int) -> list[Counted]:
    """:func:`run_calls` with ``AsyncClient`` on an event loop in this thread (``tasks`` tasks share the calls)."""
    from rpcframework.client.aio import AsyncClient

    async def calls(echo: Any, count: int) -> None:
        for _ in range(count):
            result: dict[str, Any] = await echo(TEXT)
            if result.get("Value") != TEXT:
                raise RuntimeError(f"echo mismatch: {result!r}"[:300])

    async def run() -> list[Counted]:
        out: list[Counted] = []
        async with AsyncClient(url, **options) as client:
            echo = client.echo
            await asyncio.gather(*(calls(echo, max(1, warmup // tasks)) for _ in range(tasks)))
            for count in counts:
                start, thread_start = time.process_time(), time.thread_time()
                await asyncio.gather(*(calls(echo, count // tasks) for _ in range(tasks)))
                done = (count // tasks) * tasks
                out.append((done, time.process_time() - start, time.thread_time() - thread_start))
        return out

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(run())


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when ``RPCFRAMEWORK_BENCH_LOOP=uvloop`` (it must be installed), else asyncio's own."""
    if os.environ.get("RPCFRAMEWORK_BENCH_LOOP", "asyncio") != "uvloop":
        return None
    import uvloop  # an optional extra of the benchmarks only: AsyncClient runs on whatever loop the application has

    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def _instructions(ca: Path, protocol: str, calls: int, scratch: Path, extra: list[str]) -> tuple[int, int]:
    """Instructions of one run of ``calls`` calls (after the warm-up) under callgrind: every thread, and the main
    thread alone (the client: the server runs on threads of its own)."""
    arguments = ["benchmarks.instructions", "--ca", str(ca), "--protocol", protocol, "--counts", str(calls)]
    return callgrind_counts([*arguments, "--warmup", "100", *extra], scratch / f"callgrind.{calls}.out")


def callgrind_counts(module_arguments: list[str], out: Path, env: dict[str, str] | None = None) -> tuple[int, int]:
    """Run ``python -m <module_arguments>`` under ``valgrind --tool=callgrind`` (one output file per thread, named
    after ``out``) and return the instructions of every thread and of the main thread alone."""
    command = ["valgrind", "--tool=callgrind", "--separate-threads=yes", f"--callgrind-out-file={out}"]
    command += [sys.executable, "-m", *module_arguments]
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=1800, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"valgrind failed ({done.returncode}): {done.stderr[-2000:]}")
    total = main_thread = 0
    files = sorted(out.parent.glob(f"{out.name}-*"))
    for path in files:  # one file per thread: <out>-01 (the main thread), <out>-02, ...
        match = re.search(r"^(?:summary|totals):\s+(\d+)", path.read_text(), re.MULTILINE)
        if match is None:
            raise RuntimeError(f"no summary line in {path}")
        total += int(match.group(1))
        if path.name.endswith("-01"):
            main_thread = int(match.group(1))
    if not files:
        raise RuntimeError(f"callgrind wrote no {out}*")
    return total, main_thread


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", choices=("dips", "dip"), default="dips")
    parser.add_argument("--counts", default="2000,2000,2000,2000,2000", help="calls per measured run, in a row")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--callgrind", action="store_true", help="count instructions per call with valgrind")
    parser.add_argument("--ca", type=Path, help="an existing dev CA (default: a new one)")
    parser.add_argument("--client", choices=("sync", "async"), default="sync", help="Client or AsyncClient")
    parser.add_argument("--tasks", type=int, default=1, help="asyncio tasks calling at once (--client async)")
    parser.add_argument(
        "--observe",
        choices=("metrics", "tracing", "tracing_sampled"),
        help="observers on both sides, as the rpc_reused_<observe> cases of ./bench",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rpcframework-instructions-") as scratch_name:
        scratch = Path(scratch_name)
        ca = args.ca
        if ca is None:
            from rpcframework.security.devca import DevCA

            ca = scratch / "ca"
            DevCA.init(ca)
        name = f"{args.protocol} {args.client}" + (f" x{args.tasks}" if args.tasks > 1 else "")
        name += f" {args.observe}" if args.observe else ""
        if args.callgrind:
            extra = ["--client", args.client, "--tasks", str(args.tasks)]
            extra += ["--observe", args.observe] if args.observe else []
            small = _instructions(ca, args.protocol, _SMALL, scratch, extra)
            large = _instructions(ca, args.protocol, _LARGE, scratch, extra)
            both, client = ((big - few) / (_LARGE - _SMALL) for big, few in zip(large, small, strict=True))
            calls = _LARGE - _SMALL
            print(
                f"{name}: instructions per call over {calls} calls: client + server {both:,.0f}; client {client:,.0f}"
            )
            return 0
        counts = [int(n) for n in args.counts.split(",") if n]
        results = run_calls(
            ca, args.protocol, counts, args.warmup, client_kind=args.client, tasks=args.tasks, observe=args.observe
        )
        both = sorted(1e6 * cpu / count for count, cpu, _ in results)
        client = sorted(1e6 * cpu / count for count, _, cpu in results)
        if os.environ.get("RPCFRAMEWORK_QUIET") is None:
            print(f"{name}: CPU µs per call, runs sorted: client + server {_shown(both)}; client {_shown(client)}")
    return 0


def _shown(values: list[float]) -> str:
    return ", ".join(f"{value:.1f}" for value in values)


if __name__ == "__main__":
    sys.exit(main())
