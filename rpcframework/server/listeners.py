"""The listening sockets of a :class:`~rpcframework.server.reactor.ServiceReactor`: services grouped by port (one
scheme per port), each group bound once, with its TLS credentials checked before anything is served."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

from rpcframework.config.settings import read_security_settings
from rpcframework.config.store import ConfigStore
from rpcframework.config.tree import ConfigTree
from rpcframework.errors import ConfigurationError
from rpcframework.security.registry import Registry
from rpcframework.server.guard import guard_settings
from rpcframework.server.revalidate import CredentialWatch
from rpcframework.server.service import Service, ServiceStartError
from rpcframework.transports.base import Backend, TLSConfig, get_backend

__all__ = ["Listener", "bind_listeners"]


@dataclass(eq=False)
class Listener:
    """One bound, non-blocking listening socket and the services reached through it."""

    sock: socket.socket
    scheme: str
    backend: Backend
    tls: TLSConfig | None
    services: dict[str, Service] = field(default_factory=dict)
    config: ConfigStore | ConfigTree | None = None
    watch: CredentialWatch | None = None  # TLS: re-checks kept-alive peers after CRL updates

    def is_banned(self, address: str) -> bool:
        tree = self.snapshot()
        return tree is not None and Registry.for_config(tree).is_banned(address)

    def snapshot(self) -> ConfigTree | None:
        config = self.config
        return config.snapshot() if isinstance(config, ConfigStore) else config


def bind_listeners(
    services: Sequence[Service],
    into: list[Listener],
    urls: dict[str, str],
    *,
    host: str,
    shared_port: int | None,
    backend_name: str,
    tls: TLSConfig | None,
    backlog: int,
) -> None:
    """Bind one listener per port (appended to ``into`` as it is bound, so a caller can close them if a later one
    fails) and record each service's URL in ``urls``. Port 0 means any free port: one per service unless
    ``shared_port`` groups them."""
    groups: dict[tuple[int, int], list[Service]] = {}
    for index, service in enumerate(services):
        port = service.port if shared_port is None else shared_port
        key = (port, -1 if port or shared_port is not None else index)
        groups.setdefault(key, []).append(service)
    for (port, _), members in groups.items():
        schemes = {service.protocol for service in members}
        if len(schemes) != 1:
            raise ConfigurationError(f"services on port {port} mix dips and dip: {', '.join(map(str, members))}")
        scheme = schemes.pop()
        into.append(
            _bind(
                members, urls, host=host, port=port, scheme=scheme, backend_name=backend_name, tls=tls, backlog=backlog
            )
        )


def _bind(
    members: list[Service],
    urls: dict[str, str],
    *,
    host: str,
    port: int,
    scheme: str,
    backend_name: str,
    tls: TLSConfig | None,
    backlog: int,
) -> Listener:
    interval = 0.0
    if scheme == "dips":
        interval = guard_settings(members[0].config_tree()).credentials_check_interval
        backend = get_backend(backend_name, reload_interval=interval)
        tls = tls or tls_from_config(members[0].config_tree())
        backend.prepare_server(tls)  # bad credentials fail now, not at the first client
    else:
        backend, tls = get_backend("plain"), None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family, backlog=backlog)
    except OSError as exc:
        raise ServiceStartError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.setblocking(False)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    listener = Listener(sock, scheme, backend, tls, config=members[0]._config)
    if tls is not None:
        listener.watch = CredentialWatch(tls, interval)
    for service in members:
        listener.services[service.name] = service
        urls[service.name] = f"{scheme}://{shown}:{bound}/{service.name}"
    return listener


def tls_from_config(tree: ConfigTree) -> TLSConfig:
    """The server's TLS settings from ``/DIRAC/Security`` (host certificate, CA directory, options)."""
    from rpcframework.security.locations import find_ca_dir, find_host_certificate, service_tls

    security = read_security_settings(tree)
    cert = find_host_certificate(security.cert_file, security.key_file)
    return service_tls(cert, find_ca_dir(security.ca_location), security)
