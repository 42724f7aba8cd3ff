"""Helpers for the end-to-end tests (``tests/integration/e2e``): the counting handler,
the credentials and configuration, URLs of running and of dead instances, a raw DISET exchange."""

from __future__ import annotations

import collections
import socket
import threading
from dataclasses import dataclass
from typing import Any, ClassVar

from examples.echo.client import EchoClient
from examples.echo.service import EchoHandler
from rpcframework import RPCClient
from rpcframework.client.aio import AsyncClient
from rpcframework.config import ConfigTree, load_dict
from rpcframework.server import ServiceReactor
from rpcframework.transports import Stream, get_backend
from support.credentials import DevCreds

SERVICE = "Demo/Echo"
#: A registered user who never connects: the identity a trusted host delegates to.
ALICE_DN = "/DC=org/DC=rpcframework/OU=Users/CN=alice"


class CountingHandler(EchoHandler):
    """The example handler, plus what the tests observe server-side: executions per method and peer addresses.

    Shared by every instance a test starts; the ``cluster`` fixture clears it before each test.
    """

    executions: ClassVar[collections.Counter[str]] = collections.Counter()
    executed_on: ClassVar[list[tuple[str, str]]] = []  # (method, instance URL)
    peers: ClassVar[set[tuple[str, int]]] = set()
    guard: ClassVar[threading.Lock] = threading.Lock()

    def initialize(self) -> None:
        super().initialize()
        method = self.srv_getActionTuple()[1]
        with self.guard:
            self.executions[method] += 1
            self.executed_on.append((method, self.srv_getURL()))
            address = self.getRemoteAddress()
            if address is not None:
                self.peers.add((address[0], address[1]))

    @classmethod
    def reset_observations(cls) -> None:
        with cls.guard:
            cls.executions.clear()
            cls.executed_on.clear()
            cls.peers.clear()


@dataclass(frozen=True)
class Creds(DevCreds):
    """The dev user (registered in demo_users, NormalUser) and the localhost host (TrustedHost)."""

    def config_dict(self, **systems: Any) -> dict[str, Any]:
        """The whole tree as a dict: security, registry, and ``Systems`` (``Demo={"URLs": ...}``) if given."""
        return {
            "DIRAC": {"Security": self.security_section()},
            "Registry": {
                "DefaultGroup": "demo_users",
                "Users": {"dev-user": {"DN": self.user.dn}, "alice": {"DN": ALICE_DN}},
                "Groups": {"demo_users": {"Users": "dev-user, alice", "Properties": "NormalUser"}},
                "Hosts": {"localhost": {"DN": self.host.dn, "Properties": "TrustedHost"}},
            },
            "Systems": systems,
        }

    def config(self, **systems: Any) -> ConfigTree:
        return load_dict(self.config_dict(**systems), "<e2e tests>")

    def ordered_config(self, urls: list[str]) -> ConfigTree:
        """``Demo/Echo`` resolved from the configuration: ``urls[0]`` is the primary, the others failover URLs."""
        return self.config(Demo={"URLs": {"Echo": urls[0]}, "FailoverURLs": {"Echo": ", ".join(urls[1:])}})

    def rpc(self, url: str, **options: Any) -> RPCClient:
        """An ``RPCClient`` with the dev proxy, a 10 s deadline unless given."""
        options.setdefault("proxyLocation", str(self.user.proxy_file))
        options.setdefault("timeout", 10)
        return RPCClient(url, config=self.config(), **options)

    def async_client(self, urls: list[str] | str, cls: type[AsyncClient] = AsyncClient, **options: Any) -> Any:
        """An ``AsyncClient`` (or ``cls``) for ``urls`` with the dev proxy, a 10 s deadline unless given."""
        options.setdefault("proxyLocation", str(self.user.proxy_file))
        options.setdefault("config", self.config())
        options.setdefault("timeout", 10)
        return cls(",".join(urls) if isinstance(urls, list) else urls, **options)

    def client(self, urls: list[str] | str, **options: Any) -> EchoClient:
        """An ``EchoClient`` for ``urls`` with the dev proxy and CA, a 10 s deadline unless given."""
        options.setdefault("proxyLocation", str(self.user.proxy_file))
        options.setdefault("config", self.config())
        options.setdefault("timeout", 10)
        url = urls if isinstance(urls, str) else ",".join(urls)
        return EchoClient(url, **options)


def urls_of(reactors: list[ServiceReactor], name: str = SERVICE) -> list[str]:
    return [reactor.url(name) for reactor in reactors]


def dead_urls(count: int, name: str = SERVICE) -> list[str]:
    """URLs on 127.0.0.1 ports where nothing listens (bound, then released)."""
    socks = [socket.create_server(("127.0.0.1", 0)) for _ in range(count)]
    try:
        return [f"dips://127.0.0.1:{sock.getsockname()[1]}/{name}" for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def raw_stream(url: str, creds: Creds) -> Stream:
    """A TLS connection to ``url`` with the dev proxy, for speaking DISET by hand (no ``Client`` involved)."""
    host_port = url.split("://", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    return get_backend("pyopenssl").connect(host, int(port), tls=creds.client_tls(), server_hostname="localhost")
