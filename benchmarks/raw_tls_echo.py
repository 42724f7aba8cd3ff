"""Raw TLS echo: the ceiling any RPC layer on top can reach.

A server process and a client process (separate interpreters, so no shared GIL) exchange 100-byte messages over
one persistent TLS connection for N seconds; the client prints round trips per second. Back ends: stdlib ``ssl``
and rpcframework's pyOpenSSL/M2Crypto streams (which are what the framework really uses).

    python benchmarks/raw_tls_echo.py                   # every back end, 5 s each, a throw-away dev CA
    python benchmarks/raw_tls_echo.py --backend pyopenssl --seconds 10
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import ssl
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

MESSAGE = b"x" * 100
BACKENDS = ("stdlib", "pyopenssl", "m2crypto")


def stdlib_server_context(ca: Path) -> ssl.SSLContext:
    """Server context: host credentials, hashed CA dir, client certificates (proxies) required, no tickets."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.num_tickets = 0  # like rpcframework's servers (OP_NO_TICKET): every new connection is a full handshake
    ctx.load_cert_chain(ca / "hostcert.pem", ca / "hostkey.pem")
    ctx.load_verify_locations(capath=str(ca / "certificates"))
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.verify_flags |= ssl.VERIFY_ALLOW_PROXY_CERTS
    return ctx


def stdlib_client_context(ca: Path) -> ssl.SSLContext:
    """Client context: the dev proxy, verifying the server against the hashed CA dir."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_cert_chain(ca / "proxy.pem")
    ctx.load_verify_locations(capath=str(ca / "certificates"))
    return ctx


def read_exactly(recv: Callable[[int], bytes], size: int) -> bytes:
    """``size`` bytes from ``recv``, or fewer when the peer closed."""
    data = b""
    while len(data) < size:
        chunk = recv(size - len(data))
        if not chunk:
            return data
        data += chunk
    return data


def serve(backend: str, ca: Path, listener: socket.socket) -> None:
    """Echo 100-byte messages on one accepted connection until the client closes."""
    sock, _ = listener.accept()
    recv: Callable[[int], bytes]
    send: Callable[[bytes], object]
    if backend == "stdlib":
        tls_sock = stdlib_server_context(ca).wrap_socket(sock, server_side=True)
        tls_sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        recv, send, close = tls_sock.recv, tls_sock.sendall, tls_sock.close
    else:
        from rpcframework.transports.base import TLSConfig, get_backend

        tls = TLSConfig(
            cert_file=str(ca / "hostcert.pem"), key_file=str(ca / "hostkey.pem"), ca_dir=str(ca / "certificates")
        )
        stream = get_backend(backend).wrap_server(sock, tls)
        recv, send, close = stream.recv, stream.send_all, stream.close
    for _ in range(100_000_000):
        data = read_exactly(recv, len(MESSAGE))
        if len(data) < len(MESSAGE):
            break
        send(data)
    close()


def run_client(backend: str, ca: Path, port: int, seconds: float) -> float:
    """Round trips per second over one connection."""
    recv: Callable[[int], bytes]
    send: Callable[[bytes], object]
    if backend == "stdlib":
        raw = socket.create_connection(("127.0.0.1", port))
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tls_sock = stdlib_client_context(ca).wrap_socket(raw, server_hostname="localhost")
        recv, send, close = tls_sock.recv, tls_sock.sendall, tls_sock.close
    else:
        from rpcframework.transports.base import TLSConfig, get_backend

        tls = TLSConfig(cert_file=str(ca / "proxy.pem"), ca_dir=str(ca / "certificates"))
        stream = get_backend(backend).connect("127.0.0.1", port, tls=tls, server_hostname="localhost")
        recv, send, close = stream.recv, stream.send_all, stream.close
    count = 0
    start = time.perf_counter()
    end = start + seconds
    while True:
        for _ in range(100):  # check the clock every 100 round trips, not every one
            send(MESSAGE)
            if read_exactly(recv, len(MESSAGE)) != MESSAGE:
                raise RuntimeError("echo mismatch")
        count += 100
        if time.perf_counter() >= end:
            break
    elapsed = time.perf_counter() - start
    close()
    return count / elapsed


def bench(backend: str, ca: Path, seconds: float) -> float:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(backend, ca, listener), daemon=True)
    server.start()
    listener.close()  # the server process holds its own copy
    try:
        return run_client(backend, ca, port, seconds)
    finally:
        server.join(10)
        if server.is_alive():
            server.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=[*BACKENDS, "all"], default="all")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--ca", type=Path, help="an existing dev CA directory (default: a temporary one)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        ca_dir = args.ca
        if ca_dir is None:
            from rpcframework.security.devca import DevCA

            ca_dir = Path(scratch) / "ca"
            DevCA.init(ca_dir)
        for backend in BACKENDS if args.backend == "all" else (args.backend,):
            rate = bench(backend, ca_dir, args.seconds)
            print(f"{backend:10s} {rate:10.0f} round trips/s  (100-byte echo, one TLS connection, {args.seconds:g} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
