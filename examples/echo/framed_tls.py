"""The foundation end to end: dev credentials, a TLS server on loopback, one DISET exchange per back-end pairing.

Run it with ``.venv/bin/python examples/echo/framed_tls.py`` (``./demo`` does). It

1. makes a dev CA with a host certificate, a user certificate and an RFC 3820 proxy (``DevCA.init``);
2. for every pairing of TLS back ends (pyOpenSSL and M2Crypto, client x server; pyOpenSSL only when M2Crypto is
   not installed, saying how to add it) and for plain ``dip://``, starts a server on 127.0.0.1 that speaks the
   DISET RPC sequence through the sans-IO :class:`ServerConnection`;
3. connects a client that sends a real proposal and arguments through :class:`ClientConnection`;
4. prints who each side saw (grid DNs, proxy or not) and the frames that crossed the wire, and exits 0.

Everything it uses is public API; only the "handler" (``echo``) is written inline.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rpcframework import S_OK
from rpcframework.protocol import (
    ArgumentsReceived,
    CallResult,
    ClientConnection,
    ProposalAccepted,
    ProposalReceived,
    ServerConnection,
)
from rpcframework.protocol.events import NEED_DATA, Event, Sentinel
from rpcframework.protocol.messages import Proposal
from rpcframework.security.devca import DevCA
from rpcframework.transports import Stream, TLSConfig, get_backend

log = logging.getLogger("demo")


@dataclass
class Outcome:
    """What one exchange showed."""

    client_backend: str
    server_backend: str
    server_saw: str
    client_saw: str
    result: Any
    wire: list[str]
    seconds: float


def next_event(conn: ClientConnection | ServerConnection, stream: Stream, wire: list[str], side: str) -> Event:
    """Read from ``stream`` until the state machine yields an event; log each chunk that crossed the wire."""
    while True:
        event: Event | Sentinel = conn.next_event()
        if event is not NEED_DATA:
            assert not isinstance(event, Sentinel), event
            return event
        data = stream.recv(65536)
        wire.append(f"{side} <- {data[:90]!r}{'...' if len(data) > 90 else ''}")
        conn.receive_data(data)


def serve_one(listener: socket.socket, backend_name: str, tls: TLSConfig | None, seen: dict[str, str]) -> None:
    """Accept one connection and answer one RPC exchange with ``echo``."""
    backend = get_backend(backend_name)
    raw, _ = listener.accept()
    stream = backend.wrap_server(raw, tls, handshake_timeout=10.0)
    try:
        identity = stream.peer_identity
        seen["server"] = "no certificate (plain)" if identity is None else describe(identity)
        conn = ServerConnection()
        proposal_event = next_event(conn, stream, [], "server")
        assert isinstance(proposal_event, ProposalReceived)
        stream.send_all(conn.accept())
        arguments = next_event(conn, stream, [], "server")
        assert isinstance(arguments, ArgumentsReceived)
        stream.send_all(conn.send_result(S_OK(arguments.args[0])))
    finally:
        stream.close()


def describe(identity: Any) -> str:
    kind = "limited proxy" if identity.is_limited_proxy else "proxy" if identity.is_proxy else "certificate"
    return f"{identity.dn} ({kind})"


def run_pair(ca: DevCA, client_backend: str, server_backend: str) -> Outcome:
    """One server, one client, one exchange over loopback."""
    plain = server_backend == "plain"
    server_tls = (
        None
        if plain
        else TLSConfig(
            cert_file=str(ca.directory / "hostcert.pem"),
            key_file=str(ca.directory / "hostkey.pem"),
            ca_dir=str(ca.cert_dir),
        )
    )
    client_tls = None if plain else TLSConfig(cert_file=str(ca.directory / "proxy.pem"), ca_dir=str(ca.cert_dir))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen: dict[str, str] = {}
    server = threading.Thread(target=serve_one, args=(listener, server_backend, server_tls, seen), daemon=True)
    server.start()
    wire: list[str] = []
    started = time.perf_counter()
    stream = get_backend(client_backend).connect("127.0.0.1", port, tls=client_tls, server_hostname="localhost")
    try:
        conn = ClientConnection()
        proposal = Proposal(service="Demo/Echo", action_name="echo", client_version="rpcframework-demo")
        request = conn.send_proposal(proposal)
        wire.append(f"client -> {request!r}")
        stream.send_all(request)
        accepted = next_event(conn, stream, wire, "client")
        assert isinstance(accepted, ProposalAccepted), accepted
        arguments = conn.send_arguments(["hello over " + ("dip" if plain else "dips")])
        wire.append(f"client -> {arguments!r}")
        stream.send_all(arguments)
        result = next_event(conn, stream, wire, "client")
        assert isinstance(result, CallResult), result
        identity = stream.peer_identity
        client_saw = "nothing (plain TCP)" if identity is None else describe(identity)
    finally:
        stream.close()
    server.join(timeout=10)
    listener.close()
    return Outcome(
        client_backend,
        server_backend,
        seen.get("server", "?"),
        client_saw,
        result.result,
        wire,
        time.perf_counter() - started,
    )


#: What to do to see the M2Crypto pairings too. M2Crypto has no Linux wheels: it builds from source against the
#: OpenSSL headers, which the demo does not need (it runs on wheels only, without root).
M2CRYPTO_MISSING = """\
   M2Crypto is not installed, so only the pyOpenSSL and plain pairings run. To add the M2Crypto pairings, install
   the OpenSSL headers and a C compiler (Debian/Ubuntu: sudo apt-get install libssl-dev gcc), then run
   scripts/venv.sh cli,examples --m2crypto (./test does this too) and ./demo again."""


def m2crypto_available() -> bool:
    try:
        get_backend("m2crypto")
    except Exception:  # the optional extra is missing: say so and go on with pyOpenSSL
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="where to write the dev CA (default: a temporary directory)")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="rpcframework-demo-") as tmp:
        directory = options.dir or Path(tmp)
        print(f"== dev CA in {directory}")
        ca = DevCA.init(directory)
        print(f"   CA:   {ca.dn}")
        print(f"   host: {ca.default_host().dn}")
        print(f"   user: {ca.default_user().dn} (+ RFC 3820 proxy in proxy.pem)")
        tls_backends = ["pyopenssl"] + (["m2crypto"] if m2crypto_available() else [])
        if "m2crypto" not in tls_backends:
            print(M2CRYPTO_MISSING)
        pairs = [(c, s) for s in tls_backends for c in tls_backends] + [("plain", "plain")]
        for client_backend, server_backend in pairs:
            outcome = run_pair(ca, client_backend, server_backend)
            print(
                f"\n== client {outcome.client_backend} -> server {outcome.server_backend}"
                f" ({outcome.seconds * 1000:.1f} ms incl. handshake)"
            )
            print(f"   server saw: {outcome.server_saw}")
            print(f"   client saw: {outcome.client_saw}")
            for line in outcome.wire:
                print(f"   {line}")
            print(f"   result: {outcome.result}")
            if outcome.result.get("OK") is not True:
                return 1
    print("\nall pairings exchanged DISET frames; done.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
