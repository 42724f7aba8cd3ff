"""A complete development setup for the portal, on loopback: dev CA, the Dispatcher service, portal apps.

:class:`DevEnvironment` is what ``run_portal.py`` and the tests build:

* a dev CA with two users (``alice``, ``bob``) and three host certificates: ``localhost`` for the service,
  ``portal.localhost`` for the portal (registered with ``TrustedHost``) and ``untrusted-portal.localhost`` (a
  registered host *without* ``TrustedHost``, to show the refusal);
* the service's configuration, as its operator writes it: the registry (users, group, hosts) and the service's
  security section;
* the ``DataManagement/Dispatcher`` service (SQLite in the environment's directory) in a ``ServiceReactor``;
* per portal, the configuration that portal's operator writes: its host certificate (``/DIRAC/Security``) and where
  the service is (``/Systems/DataManagement/URLs/Dispatcher``); the portal never needs the service's registry.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette

from examples.dispatcher.client import DispatcherClient
from examples.dispatcher.handler import DispatcherHandler
from examples.portal.app import PortalSettings, make_app
from examples.portal.gateway import AsyncDispatcherClient, DispatcherGateway, PortalUser
from rpcframework.config import ConfigTree, load_dict
from rpcframework.security.devca import DevCA, IssuedCredential
from rpcframework.server import Service, ServiceReactor

__all__ = ["GROUP", "SERVICE", "DevEnvironment", "dev_environment"]

SERVICE = "DataManagement/Dispatcher"
GROUP = "dispatcher_users"
PORTAL_HOST = "portal.localhost"
UNTRUSTED_HOST = "untrusted-portal.localhost"
DEV_USERS = ("alice", "bob")


@dataclass(frozen=True)
class DevEnvironment:
    """Credentials, the running service, and factories for portals that call it."""

    ca: DevCA
    users: dict[str, PortalUser]
    portal_host: IssuedCredential
    untrusted_host: IssuedCredential
    service_url: str

    def portal_config(self, host: IssuedCredential) -> ConfigTree:
        """What the portal's operator configures: its host certificate, the CA directory, the service's URL."""
        system, component = SERVICE.split("/")
        return load_dict(
            {
                "DIRAC": {
                    "Security": {
                        "CertFile": str(host.cert_file),
                        "KeyFile": str(host.key_file),
                        "CALocation": str(self.ca.cert_dir),
                    }
                },
                "Systems": {system: {"URLs": {component: self.service_url}}},
            },
            f"<portal config for {host.dn}>",
        )

    def client(self, *, trusted: bool = True) -> DispatcherClient:
        """The portal's shared client: the host certificate (``useCertificates=True``), a 10 s deadline."""
        host = self.portal_host if trusted else self.untrusted_host
        return DispatcherClient(config=self.portal_config(host), useCertificates=True, timeout=10)

    def async_client(self, *, trusted: bool = True) -> AsyncDispatcherClient:
        """The portal's shared asyncio client (the web app's): the host certificate, a 10 s deadline."""
        host = self.portal_host if trusted else self.untrusted_host
        return AsyncDispatcherClient(config=self.portal_config(host), useCertificates=True, timeout=10)

    def portal_app(self, *, trusted: bool = True, dev_mode: bool = True) -> Starlette:
        """The web app with its own client (closed when the app shuts down)."""
        gateway = DispatcherGateway(self.async_client(trusted=trusted))
        return make_app(gateway, PortalSettings(users=self.users, dev_mode=dev_mode))


def service_config(ca: DevCA, users: dict[str, IssuedCredential], hosts: dict[str, tuple[str, str]]) -> ConfigTree:
    """The service operator's configuration: its credentials and the registry (``hosts``: name -> DN, properties)."""
    registry: dict[str, Any] = {
        "DefaultGroup": GROUP,
        "Users": {name: {"DN": cred.dn} for name, cred in users.items()},
        "Groups": {GROUP: {"Users": ", ".join(users), "Properties": "NormalUser"}},
        "Hosts": {name: {"DN": dn, "Properties": properties} for name, (dn, properties) in hosts.items()},
    }
    service = ca.default_host()
    security = {"CertFile": str(service.cert_file), "KeyFile": str(service.key_file), "CALocation": str(ca.cert_dir)}
    return load_dict({"DIRAC": {"Security": security}, "Registry": registry}, "<dispatcher service config>")


@contextmanager
def dev_environment(directory: Path) -> Iterator[DevEnvironment]:
    """Make credentials in ``directory``, run the Dispatcher service on 127.0.0.1, stop it at the end."""
    ca = DevCA.init(directory / "devca")
    users = {name: ca.issue_user(name) for name in DEV_USERS}
    portal_host = ca.issue_host(PORTAL_HOST)
    untrusted_host = ca.issue_host(UNTRUSTED_HOST)
    hosts = {
        "portal": (portal_host.dn, "TrustedHost"),
        "untrusted-portal": (untrusted_host.dn, ""),  # registered, may call as itself, may not act for users
    }
    config = service_config(ca, users, hosts)
    handler = DispatcherHandler.with_database(directory / "dispatcher.sqlite")
    reactor = ServiceReactor([Service(SERVICE, handler, config=config, port=0)], host="127.0.0.1")
    reactor.start()
    try:
        yield DevEnvironment(
            ca=ca,
            users={name: PortalUser(name, cred.dn, GROUP) for name, cred in users.items()},
            portal_host=portal_host,
            untrusted_host=untrusted_host,
            service_url=reactor.url(SERVICE),
        )
    finally:
        reactor.stop(timeout=5)
        handler.close_store()
