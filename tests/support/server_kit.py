"""Helpers for the reactor tests (``tests/integration/server``): test
handlers, a registry, and a raw DISET client built from the transports and the sans-IO ``ClientConnection``
(independent of ``rpcframework.client``)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
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
from rpcframework.server import RequestHandler
from rpcframework.server.reactor import ServiceReactor
from rpcframework.server.service import Service
from rpcframework.transports.base import Stream, get_backend
from support.credentials import DevCreds
from support.waiting import Gate, poll


class EchoHandler(RequestHandler):
    """What the DIRAC captures were made against (Bench/EchoPlain), plus probes for the fault tests."""

    auth_echo: ClassVar[list[str]] = ["all"]
    types_add: ClassVar[list[Any]] = [int, int]
    auth_add: ClassVar[list[str]] = ["all"]
    types_secret: ClassVar[list[Any]] = []  # no rule anywhere: refused (deny by default)
    types_boom: ClassVar[list[Any]] = []
    auth_boom: ClassVar[list[str]] = ["all"]
    types_held: ClassVar[list[Any]] = []
    auth_held: ClassVar[list[str]] = ["all"]
    gate: ClassVar[Gate] = Gate()  # holds ``held`` calls until the test opens it
    types_managed: ClassVar[list[Any]] = []
    auth_managed: ClassVar[list[str]] = ["SiteManager"]  # overridden by the configuration in some tests
    types_wait_for_leave: ClassVar[list[Any]] = [(int, float)]
    auth_wait_for_leave: ClassVar[list[str]] = ["all"]
    seen_leaves: ClassVar[list[bool]] = []
    waiting_for_leave: ClassVar[threading.Event] = threading.Event()

    def export_add(self, a: int, b: int) -> Any:
        return S_OK(a + b)

    def export_secret(self) -> Any:
        return S_OK("secret")

    def export_boom(self) -> Any:
        raise RuntimeError("internal detail /srv/secret/path")

    def export_held(self) -> Any:
        return S_OK("released") if type(self).gate.enter() else S_ERROR("the test never opened the gate")

    def export_managed(self) -> Any:
        return S_OK(self.getRemoteCredentials().get("username"))

    def export_wait_for_leave(self, seconds: float) -> Any:
        type(self).waiting_for_leave.set()
        poll(self.caller_connected, lambda connected: not connected, seconds)
        type(self).seen_leaves.append(not self.caller_connected())
        return S_ERROR("caller left") if not self.caller_connected() else S_OK("still here")


Creds = DevCreds  # the dev CA's host and user: all the reactor tests need


def service(
    creds: Creds,
    protocol: str = "dips",
    name: str = "Bench/Echo",
    handler: type[RequestHandler] = EchoHandler,
    services_cfg: dict[str, Any] | None = None,
    **options: Any,
) -> Service:
    """A service of ``handler`` on an ephemeral port, with :func:`make_config`'s registry."""
    return Service(name, handler, config=make_config(creds, services_cfg), port=0, protocol=protocol, **options)


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
