"""Instructions and CPU per new connection (DIRAC mode), counted rather than timed: server and client in one process.

    .venv/bin/python -m benchmarks.new_connections                        # CPU µs per connection, rpc and raw
    .venv/bin/python -m benchmarks.new_connections --callgrind            # instructions per connection (~5 minutes)

Each connection is what ``rpc_new_connection`` measures (a pure DIRAC ``Client``: TCP connect, resumed TLS handshake,
proposal, ack, arguments, result, close), or what its floor ``raw_pyopenssl_connect_resumed_echo`` measures (connect,
resumed handshake, one 100-byte echo, close), with the very client and server code of those cases. ``--callgrind``
runs each kind twice under ``valgrind --tool=callgrind --separate-threads=yes`` (20 and 220 connections, after a
warm-up, ``PYTHONHASHSEED=0``) and divides the difference by 200: start-up and imports cancel out. The main
thread is the client; every other thread is the server (the raw server's one thread; the reactor's selector and
workers). Deterministic to about ±20k instructions per connection.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

__all__ = ["main"]

_FEW, _MANY = 20, 220
_KINDS = ("rpc", "raw")


def run_connections(ca: Path, kind: str, count: int, warmup: int = 50) -> tuple[float, float]:
    """Serve in this process, open ``warmup`` then ``count`` connections; (process CPU s, client thread CPU s)."""
    import logging

    from benchmarks import cases

    logging.basicConfig(level=logging.WARNING)
    server: Any = None
    if kind == "raw":
        listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        args = ("pyopenssl", ca, listener, False)
        threading.Thread(target=cases._echo_connections, args=args, daemon=True).start()
        caller: Any = cases._PyOpenSSLConnectEcho(ca, f"127.0.0.1:{listener.getsockname()[1]}", resume=True)
    else:
        from rpcframework.server import Service, ServiceReactor
        from rpcframework.transports import TLSConfig

        tls = TLSConfig(
            cert_file=str(ca / "hostcert.pem"), key_file=str(ca / "hostkey.pem"), ca_dir=str(ca / "certificates")
        )
        service = Service("Bench/Echo", cases._handler_class(), port=0, protocol="dips")
        server = ServiceReactor([service], host="127.0.0.1", tls=tls).start()
        caller = cases._RPCNewConnectionEcho(ca, server.url("Bench/Echo"))
    try:
        for _ in range(warmup):
            caller.call()
        start, thread_start = time.process_time(), time.thread_time()
        for _ in range(count):
            caller.call()
        return time.process_time() - start, time.thread_time() - thread_start
    finally:
        caller.close()
        if server is not None:
            server.stop()


def _instructions(ca: Path, kind: str, count: int, scratch: Path) -> tuple[int, int]:
    """Instructions of a run of ``count`` connections: every thread, and the main thread (the client) alone."""
    from benchmarks.instructions import callgrind_counts

    arguments = ["benchmarks.new_connections", "--ca", str(ca), "--kind", kind, "--count", str(count)]
    env = {**os.environ, "PYTHONHASHSEED": "0", "RPCFRAMEWORK_QUIET": "1"}
    return callgrind_counts(arguments, scratch / f"callgrind.{kind}.{count}.out", env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=_KINDS, help="one kind only (default: both)")
    parser.add_argument("--count", type=int, default=1000, help="measured connections (without --callgrind)")
    parser.add_argument("--callgrind", action="store_true", help="count instructions per connection with valgrind")
    parser.add_argument("--ca", type=Path, help="an existing dev CA made by benchmarks.run (default: a new one)")
    args = parser.parse_args(argv)
    kinds = (args.kind,) if args.kind else _KINDS
    with tempfile.TemporaryDirectory(prefix="rpcframework-new-connections-") as scratch_name:
        scratch = Path(scratch_name)
        ca = args.ca
        if ca is None:
            from benchmarks.run import make_ca

            ca = make_ca(scratch / "ca")
        for kind in kinds:
            if args.callgrind:
                few, many = (_instructions(ca, kind, n, scratch) for n in (_FEW, _MANY))
                both, client = ((b - a) / (_MANY - _FEW) for b, a in zip(many, few, strict=True))
                print(f"{kind}: instructions per connection: client {client:,.0f}; server {both - client:,.0f}")
                continue
            cpu, client_cpu = run_connections(ca, kind, args.count)
            if os.environ.get("RPCFRAMEWORK_QUIET") is None:
                client, server = (1e6 * cpu_s / args.count for cpu_s in (client_cpu, cpu - client_cpu))
                print(f"{kind}: CPU µs per connection: client {client:.0f}; server {server:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
