"""Helpers for the reactor tests (``tests/integration/server``): test
handlers, a registry, and a raw DISET client built from the transports and the sans-IO ``ClientConnection``
(independent of ``rpcframework.client``)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from rpcframework.codec import Encoding
from rpcframework.config import load_dict
from rpcframework.protocol import (
    NEED_DATA,
    CallResult,
    ClientConnection,
    Extensions,
    Feature,
    Proposal,
    ProposalAccepted,
    ProposalRefused,
)
from rpcframework.returnvalues import S_ERROR, S_OK
from rpcframework.security.devca import DevCA
from rpcframework.server import RequestHandler
from rpcframework.server.reactor import ServiceReactor
from rpcframework.transports.base import Stream, TLSConfig, get_backend


class EchoHandler(RequestHandler):
    """What the DIRAC captures were made against (Bench/EchoPlain), plus probes for the fault tests."""

    auth_echo: ClassVar[list[str]] = ["all"]
    types_add: ClassVar[list[Any]] = [int, int]
    auth_add: ClassVar[list[str]] = ["all"]
    types_secret: ClassVar[list[Any]] = []  # no rule anywhere: refused (deny by default)
    types_boom: ClassVar[list[Any]] = []
    auth_boom: ClassVar[list[str]] = ["all"]
    types_slow: ClassVar[list[Any]] = [(int, float)]
    auth_slow: ClassVar[list[str]] = ["all"]
    types_managed: ClassVar[list[Any]] = []
    auth_managed: ClassVar[list[str]] = ["SiteManager"]  # overridden by the configuration in some tests
    types_wait_for_leave: ClassVar[list[Any]] = [(int, float)]
    auth_wait_for_leave: ClassVar[list[str]] = ["all"]
    seen_leaves: ClassVar[list[bool]] = []

    def export_add(self, a: int, b: int) -> Any:
        return S_OK(a + b)

    def export_secret(self) -> Any:
        return S_OK("secret")

    def export_boom(self) -> Any:
        raise RuntimeError("internal detail /srv/secret/path")

    def export_slow(self, seconds: float) -> Any:
        time.sleep(seconds)
        return S_OK(seconds)

    def export_managed(self) -> Any:
        return S_OK(self.getRemoteCredentials().get("username"))

    def export_wait_for_leave(self, seconds: float) -> Any:
        end = time.monotonic() + seconds
        while time.monotonic() < end and self.caller_connected():
            time.sleep(0.02)
        type(self).seen_leaves.append(not self.caller_connected())
        return S_ERROR("caller left") if not self.caller_connected() else S_OK("still here")


@dataclass(frozen=True)
class Creds:
    ca: DevCA
    root: Path

    def server_tls(self) -> TLSConfig:
        host = self.ca.default_host()
        return TLSConfig(cert_file=str(host.cert_file), key_file=str(host.key_file), ca_dir=str(self.ca.cert_dir))

    def client_tls(self) -> TLSConfig:
        user = self.ca.default_user()
        return TLSConfig(cert_file=str(user.proxy_file), ca_dir=str(self.ca.cert_dir))


def make_config(creds: Creds, services: dict[str, Any] | None = None) -> Any:
    user, host = creds.ca.default_user(), creds.ca.default_host()
    return load_dict(
        {
            "Registry": {
                "Users": {"dev-user": {"DN": user.dn}},
                "Groups": {"users": {"Users": "dev-user", "Properties": "NormalUser"}},
                "Hosts": {"localhost": {"DN": host.dn, "Properties": "TrustedHost"}},
                "DefaultGroup": "users",
                "BannedIPs": "127.0.0.2",
            },
            "Systems": {"Bench": {"Services": services or {}}},
        }
    )


class RawClient:
    """One DISET connection: proposal, ack, arguments, result; optionally many calls with ``reuse``."""

    def __init__(self, stream: Stream, *, offer: Extensions | None = None, encoding: Encoding = Encoding.JSON) -> None:
        self.stream = stream
        self.conn = ClientConnection(encoding=encoding, offer=offer)
        stream.settimeout(10)

    def _event(self) -> Any:
        for _ in range(10_000):
            event = self.conn.next_event()
            if event is not NEED_DATA:
                return event
            self.conn.receive_data(self.stream.recv(65536))
        raise AssertionError("no event")

    def call(self, method: str, *args: Any, service: str = "Bench/Echo", kwargs: dict[str, Any] | None = None) -> Any:
        proposal = Proposal(service=service, action_name=method, client_version="test")
        self.stream.send_all(self.conn.send_proposal(proposal))
        event = self._event()
        if isinstance(event, ProposalRefused):
            return event.error
        assert isinstance(event, ProposalAccepted), event
        self.stream.send_all(self.conn.send_arguments(list(args), kwargs))
        result = self._event()
        assert isinstance(result, CallResult), result
        return result.result

    def close(self) -> None:
        self.stream.close()


REUSE = Extensions(features=frozenset({Feature.REUSE, Feature.KWARGS}))


def connect(reactor: ServiceReactor, name: str, creds: Creds, backend: str = "pyopenssl") -> Stream:
    url = reactor.url(name)
    host, port = url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)
    host = host.strip("[]")
    if url.startswith("dip://"):
        return get_backend("plain").connect(host, int(port), tls=None)
    return get_backend(backend).connect("localhost", int(port), tls=creds.client_tls())


def raw_socket(reactor: ServiceReactor, name: str, source: str | None = None) -> socket.socket:
    host, port = reactor.url(name).split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)
    sock = socket.create_connection(
        (host.strip("[]"), int(port)), timeout=10, source_address=(source, 0) if source else None
    )
    return sock


def recv_all(sock: socket.socket, timeout: float = 5.0) -> tuple[bytes, bool]:
    """Everything the server sends until it closes (True) or ``timeout`` passes (False)."""
    sock.settimeout(0.2)
    data = bytearray()
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return bytes(data), True
        if not chunk:
            return bytes(data), True
        data += chunk
    return bytes(data), False


def run_in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def wrapper() -> None:
        try:
            box["result"] = target()
        except Exception as exc:
            box["error"] = exc

    thread = threading.Thread(target=wrapper, daemon=True)
    thread.start()
    return thread, box
