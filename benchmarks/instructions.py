"""Instructions and CPU per call, counted rather than timed: a ``ServiceReactor`` and a ``Client`` in one process.

    .venv/bin/python -m benchmarks.instructions                      # CPU µs per call (process time), 5 x 2,000 calls
    .venv/bin/python -m benchmarks.instructions --callgrind          # instructions per call (valgrind, ~1 minute)
    .venv/bin/python -m benchmarks.instructions --protocol dip       # plain TCP: no TLS, the Python layers only

Wall-clock rates on a shared 2-core machine move by tens of percent from one run to the next; what one call costs
in CPU does not. Both sides run in this process (so their CPU adds up: client + server per call). ``--callgrind``
runs this module twice under ``valgrind --tool=callgrind`` (a few calls, then many more) and divides the difference
of the instruction counts by the difference of the calls: start-up, imports and the handshake cancel out.
Deterministic to a fraction of a percent between runs, whatever else the machine does.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

__all__ = ["main"]

TEXT = "x" * 100
_SMALL, _LARGE = 300, 1500


def _handler() -> type[Any]:
    from rpcframework.server import RequestHandler

    class Bench(RequestHandler):
        auth_echo: ClassVar[list[str]] = ["all"]

    return Bench


def run_calls(ca: Path, protocol: str, counts: list[int], warmup: int = 200) -> list[tuple[int, float]]:
    """Serve in this process and make ``warmup`` calls, then each of ``counts`` calls in a row: (calls, CPU s)."""
    import logging

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
    out: list[tuple[int, float]] = []
    with ServiceReactor([service], host="127.0.0.1", tls=tls if protocol == "dips" else None) as server:
        client = Client(server.url("Bench/Echo"), proxyLocation=str(ca / "proxy.pem"), config=config)
        echo = client.echo
        try:
            for _ in range(warmup):
                echo(TEXT)
            for count in counts:
                start = time.process_time()
                for _ in range(count):
                    if echo(TEXT)["Value"] != TEXT:
                        raise RuntimeError("echo mismatch")
                out.append((count, time.process_time() - start))
        finally:
            client.close()
    return out


def _instructions(ca: Path, protocol: str, calls: int, scratch: Path) -> int:
    """Instructions of one run of ``calls`` calls (after the warm-up), every thread, under callgrind."""
    out = scratch / f"callgrind.{calls}.out"
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        sys.executable,
        "-m",
        "benchmarks.instructions",
        "--ca",
        str(ca),
        "--protocol",
        protocol,
        "--counts",
        str(calls),
        "--warmup",
        "100",
    ]
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"valgrind failed ({done.returncode}): {done.stderr[-2000:]}")
    match = re.search(r"^summary:\s+(\d+)", out.read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no summary line in {out}")
    return int(match.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", choices=("dips", "dip"), default="dips")
    parser.add_argument("--counts", default="2000,2000,2000,2000,2000", help="calls per measured run, in a row")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--callgrind", action="store_true", help="count instructions per call with valgrind")
    parser.add_argument("--ca", type=Path, help="an existing dev CA (default: a new one)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rpcframework-instructions-") as scratch_name:
        scratch = Path(scratch_name)
        ca = args.ca
        if ca is None:
            from rpcframework.security.devca import DevCA

            ca = scratch / "ca"
            DevCA.init(ca)
        if args.callgrind:
            small = _instructions(ca, args.protocol, _SMALL, scratch)
            large = _instructions(ca, args.protocol, _LARGE, scratch)
            per_call = (large - small) / (_LARGE - _SMALL)
            print(f"{args.protocol}: {per_call:,.0f} instructions per call (client + server, {_LARGE - _SMALL} calls)")
            return 0
        counts = [int(n) for n in args.counts.split(",") if n]
        results = run_calls(ca, args.protocol, counts, args.warmup)
        per_call = sorted(1e6 * cpu / count for count, cpu in results)
        if os.environ.get("RPCFRAMEWORK_QUIET") is None:
            shown = ", ".join(f"{value:.1f}" for value in per_call)
            print(f"{args.protocol}: CPU µs per call (client + server), runs sorted: {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
