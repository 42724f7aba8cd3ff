"""Credentials, configuration, handler and raw-socket helpers for the adversarial suite."""

from __future__ import annotations

import copy
import datetime
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from rpcframework.client import Client
from rpcframework.config import ConfigStore, ConfigTree, load_dict
from rpcframework.returnvalues import S_ERROR, S_OK
from rpcframework.security.devca import DevCA, IssuedCredential
from rpcframework.server import RequestHandler, Service, ServiceReactor
from rpcframework.server.context import current_request
from rpcframework.transports import TLSConfig
from support.wire import read_until_closed

SERVICE = "Sec/Probe"
ALICE_DN = "/DC=org/DC=rpcframework/OU=Users/CN=alice"
BOB_DN = "/DC=org/DC=rpcframework/OU=Users/CN=bob"
#: Trailing bytes a well-formed proposal for ``method`` on SERVICE has in DISET's JSON form.
PROPOSAL = b'{"OK": true, "Value": [["Sec/Probe", "None", "unknown"], ["RPC", "%s"], "", "9.1.22"]}'


class ProbeHandler(RequestHandler):
    """Reports who it is serving, checked against the context variable the dispatcher publishes."""

    auth_who: ClassVar[list[str]] = ["authenticated"]
    types_who: ClassVar[list[Any]] = [str]
    auth_count: ClassVar[list[str]] = ["authenticated"]
    types_count: ClassVar[list[Any]] = [list]
    auth_secret: ClassVar[list[str]] = ["ServiceAdministrator"]
    types_secret: ClassVar[list[Any]] = []
    auth_boom: ClassVar[list[str]] = ["authenticated"]
    types_boom: ClassVar[list[Any]] = []
    auth_open: ClassVar[list[str]] = ["all"]
    types_open: ClassVar[list[Any]] = []

    def export_who(self, nonce: str) -> Any:
        own = self.getRemoteCredentials()
        published = current_request().credentials()
        if own.get("DN") != published.get("DN") or own.get("group") != published.get("group"):
            return S_ERROR("identity mismatch between the handler and the request context")
        return S_OK(
            {
                "nonce": nonce,
                "DN": own.get("DN"),
                "username": own.get("username"),
                "group": own.get("group"),
                "properties": own.get("properties"),
                "delegatedFrom": own.get("delegatedFrom"),
                "peer": list(self.getRemoteAddress() or ()),
            }
        )

    def export_count(self, items: list[Any]) -> Any:
        return S_OK(len(items))

    def export_secret(self) -> Any:
        return S_OK("secret")

    def export_boom(self) -> Any:
        raise RuntimeError(f"internal detail in {__file__}")

    def export_open(self) -> Any:
        return S_OK(self.getRemoteCredentials().get("username", "anonymous"))


@dataclass
class Kit:
    root: Path
    ca: DevCA
    host: IssuedCredential  # localhost, TrustedHost
    untrusted_host: IssuedCredential  # registered host without TrustedHost
    user: IssuedCredential  # dev-user, NormalUser
    alice: IssuedCredential
    revoked: IssuedCredential  # revoked user: its certificate and its proxy are refused
    expired_proxy: Path
    limited_proxy: Path
    twin: IssuedCredential  # a user whose DN is also listed under Registry/Hosts with TrustedHost
    suspended: IssuedCredential
    stranger: IssuedCredential  # signed by the CA, not in the registry

    def registry(self) -> dict[str, Any]:
        return {
            "DefaultGroup": "users",
            "Users": {
                "dev-user": {"DN": self.user.dn},
                "alice": {"DN": ALICE_DN},
                "bob": {"DN": BOB_DN},
                "twin": {"DN": self.twin.dn},
                "suspended": {"DN": self.suspended.dn, "Suspended": "yes"},
                "revoked": {"DN": self.revoked.dn},
            },
            "Groups": {
                "users": {"Users": "dev-user, alice, bob, twin, suspended, revoked", "Properties": "NormalUser"},
                "admins": {"Users": "bob", "Properties": "ServiceAdministrator"},
            },
            "Hosts": {
                "localhost": {"DN": self.host.dn, "Properties": "TrustedHost"},
                "worker": {"DN": self.untrusted_host.dn, "Properties": "GenericPilot"},
                "twin-host": {"DN": self.twin.dn, "Properties": "TrustedHost"},
            },
        }

    def config_dict(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        tree: dict[str, Any] = {
            "DIRAC": {
                "Security": {
                    "CALocation": str(self.ca.cert_dir),
                    "CertFile": str(self.host.cert_file),
                    "KeyFile": str(self.host.key_file),
                }
            },
            "Registry": self.registry(),
            "Systems": {"Sec": {"Services": {"Probe": {}}}},
        }
        return _merge(tree, overrides or {})

    def config(self, overrides: dict[str, Any] | None = None) -> ConfigTree:
        return load_dict(self.config_dict(overrides), "<security tests>")

    def server_tls(self) -> TLSConfig:
        return TLSConfig(str(self.host.cert_file), str(self.host.key_file), ca_dir=str(self.ca.cert_dir))

    def tls_for(self, cert_file: Path, key_file: Path | None = None) -> TLSConfig:
        return TLSConfig(str(cert_file), str(key_file) if key_file else None, ca_dir=str(self.ca.cert_dir))

    def reactor(
        self, overrides: dict[str, Any] | None = None, *, store: ConfigStore | None = None, **options: Any
    ) -> ServiceReactor:
        config = store if store is not None else self.config(overrides)
        service = Service(SERVICE, ProbeHandler, config=config, port=0, max_threads=options.pop("max_threads", 8))
        options.setdefault("host", "127.0.0.1")
        options.setdefault("tls", self.server_tls())
        return ServiceReactor([service], **options)

    def client(self, url: str, *, host: bool = False, proxy: Path | None = None, **options: Any) -> Client:
        """A client with the dev user's proxy, or (``host=True``) the TrustedHost certificate."""
        options.setdefault("timeout", 20)
        options.setdefault("config", self.config())
        if host:
            options.update(useCertificates=True, proxyLocation=None)
        else:
            options.setdefault("proxyLocation", str(proxy or self.user.proxy_file))
        return Client(url=url, **options)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def make_kit(root: Path) -> Kit:
    ca = DevCA.init(root / "ca", key_type="ec")
    past = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    user = ca.default_user()
    revoked = ca.issue_user("revoked")
    expired_proxy = root / "expired-proxy.pem"
    ca.issue_proxy(
        user.proxy_file, user.proxy_file, expired_proxy, not_before=past, not_after=past + datetime.timedelta(hours=1)
    )
    limited_proxy = root / "limited-proxy.pem"
    ca.issue_proxy(user.cert_file, user.key_file, limited_proxy, limited=True)
    kit = Kit(
        root=root,
        ca=ca,
        host=ca.default_host(),
        untrusted_host=ca.issue_host("worker.example.org"),
        user=user,
        alice=ca.issue_user("alice"),
        revoked=revoked,
        expired_proxy=expired_proxy,
        limited_proxy=limited_proxy,
        twin=ca.issue_user("twin"),
        suspended=ca.issue_user("suspended"),
        stranger=ca.issue_user("stranger"),
    )
    ca.revoke(revoked.cert_file)
    return kit


def still_serves(kit: Kit, reactor: ServiceReactor) -> None:
    """A well-behaved client (the dev user) is served by ``reactor``, whatever was done to it before."""
    with kit.client(reactor.url(SERVICE)) as client:
        assert client.who("ok")["Value"]["username"] == "dev-user"


def address_of(reactor: ServiceReactor) -> tuple[str, int]:
    return "127.0.0.1", reactor.ports[SERVICE]


def raw_socket(reactor: ServiceReactor, source: str = "127.0.0.1", timeout: float = 10.0) -> socket.socket:
    """A TCP connection from ``source`` (another loopback address stands for another machine)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect(address_of(reactor))
    return sock


def tls_stream(reactor: ServiceReactor, tls: TLSConfig) -> Any:
    """A TLS connection (pyOpenSSL back end) with ``tls`` as the client's credentials."""
    from rpcframework.transports import get_backend

    host, port = address_of(reactor)
    return get_backend("pyopenssl").connect(host, port, tls=tls, server_hostname="localhost")


def exchange(stream: Any, *frames: bytes, timeout: float = 5.0) -> tuple[bytes, bool]:
    """Send ``frames`` over a TLS stream, then read until the server closes (``True``) or ``timeout`` passes."""
    from rpcframework.errors import ConnectionClosedError

    try:
        for data in frames:
            stream.send_all(data)
    except ConnectionClosedError:  # the server stopped listening part-way: it has closed
        return b"", True
    return read_until_closed(stream, timeout)
