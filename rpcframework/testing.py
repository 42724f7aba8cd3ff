"""pytest plugin for service authors (registered through the ``pytest11`` entry point, so it is always loaded).

Fixtures:

``rpcframework_dev_ca``
    A :class:`~rpcframework.security.devca.DevCA` made once per test session in a temporary directory: hashed CA
    directory with CRL, host certificate for ``localhost``/127.0.0.1/::1, a user certificate and its proxy.

``rpcframework_serve``
    A factory that runs a :class:`~rpcframework.server.RequestHandler` subclass as a real TLS service on a free
    loopback port and returns its URL; every service it started is stopped at the end of the test::

        def test_echo(rpcframework_serve, rpcframework_client_options):
            url = rpcframework_serve(EchoHandler, "Demo/Echo", config={"Authorization": {"echo": "all"}})
            client = Client(url=url, **rpcframework_client_options)
            assert client.echo("hi")["Value"] == "hi"

``rpcframework_client_options``
    Keyword options for :class:`~rpcframework.Client` that use the dev proxy and CA directory.

For tests without any server, use :class:`rpcframework.MockTransport`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from rpcframework.config import ConfigTree
from rpcframework.security.devca import DevCA
from rpcframework.server import RequestHandler, Service, ServiceReactor
from rpcframework.transports import TLSConfig

__all__ = ["ServeFactory", "rpcframework_client_options", "rpcframework_dev_ca", "rpcframework_serve"]

ServeFactory = Callable[..., str]


@pytest.fixture(scope="session")
def rpcframework_dev_ca(tmp_path_factory: pytest.TempPathFactory) -> DevCA:
    """A development CA with host, user and proxy credentials, made once per session."""
    return DevCA.init(tmp_path_factory.mktemp("rpcframework-devca"))


@pytest.fixture
def rpcframework_client_options(rpcframework_dev_ca: DevCA, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """``Client`` options that authenticate with the dev user's proxy; the dev CA is trusted via X509_CERT_DIR."""
    monkeypatch.setenv("X509_CERT_DIR", str(rpcframework_dev_ca.cert_dir))
    return {"proxyLocation": str(rpcframework_dev_ca.directory / "proxy.pem")}


def _service_config(
    name: str, service_section: Mapping[str, Any] | None, registry: Mapping[str, Any] | None
) -> ConfigTree:
    system, component = name.split("/", 1)
    tree: dict[str, Any] = {"Systems": {system: {"Services": {component: dict(service_section or {})}}}}
    if registry is not None:
        tree["Registry"] = dict(registry)
    return ConfigTree.from_dict(tree)


@pytest.fixture
def rpcframework_serve(rpcframework_dev_ca: DevCA, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServeFactory]:
    """Start handler classes as TLS services on 127.0.0.1; returns their ``dips://`` URLs."""
    reactors: list[ServiceReactor] = []
    ca = rpcframework_dev_ca
    monkeypatch.setenv("X509_CERT_DIR", str(ca.cert_dir))
    monkeypatch.setenv("X509_USER_PROXY", str(ca.directory / "proxy.pem"))

    def serve(
        handler: type[RequestHandler],
        name: str,
        *,
        config: Mapping[str, Any] | None = None,
        registry: Mapping[str, Any] | None = None,
        backend: str = "pyopenssl",
        **reactor_options: Any,
    ) -> str:
        tree = _service_config(name, config, registry)
        tls = TLSConfig(
            cert_file=str(ca.directory / "hostcert.pem"),
            key_file=str(ca.directory / "hostkey.pem"),
            ca_dir=str(ca.cert_dir),
        )
        service = Service(name, handler, config=tree, port=0)
        reactor = ServiceReactor([service], host="127.0.0.1", backend=backend, tls=tls, **reactor_options)
        reactor.start()
        reactors.append(reactor)
        return reactor.url(service.name)

    yield serve
    for reactor in reversed(reactors):
        reactor.stop(timeout=5.0)


def dev_ca_paths(ca: DevCA) -> dict[str, Path]:
    """The files of a dev CA by role, for tests that build their own TLS settings."""
    return {
        "cert_dir": ca.cert_dir,
        "host_cert": ca.directory / "hostcert.pem",
        "host_key": ca.directory / "hostkey.pem",
        "user_cert": ca.directory / "usercert.pem",
        "user_key": ca.directory / "userkey.pem",
        "proxy": ca.directory / "proxy.pem",
    }
