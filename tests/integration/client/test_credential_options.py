"""``certLocation``/``keyLocation`` and ``caLocation`` over a real TLS socket on 127.0.0.1: the server sees the
user certificate's DN although a proxy is findable, and an explicit CA directory wins over ``$X509_CERT_DIR``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rpcframework.client import Client
from rpcframework.config import load_dict
from rpcframework.security.devca import DevCA

BACKENDS = ["pyopenssl", "m2crypto"]


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> DevCA:
    """A CA the test server's certificate does not chain to, with its own user and proxy."""
    return DevCA.init(tmp_path_factory.mktemp("stranger-ca"))


def _no_proxy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GRID_PROXY_FILE", raising=False)
    monkeypatch.setenv("X509_USER_PROXY", str(tmp_path / "no-proxy-here"))
    monkeypatch.delenv("X509_USER_CERT", raising=False)
    monkeypatch.delenv("X509_USER_KEY", raising=False)


@pytest.mark.parametrize("backend", BACKENDS)
def test_user_certificate_without_a_proxy(
    servers: Any, creds: Any, backend: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _no_proxy(monkeypatch, tmp_path)
    peer = servers("ext", backend, creds.server_tls())
    user = creds.user
    options = {"certLocation": str(user.cert_file), "keyLocation": str(user.key_file), "backend": backend}
    with Client(peer.url(), config=creds.config(), timeout=10, **options) as client:
        assert client.echo("as the user")["Value"] == "as the user"
    [identity] = peer.identities
    assert identity is not None and identity.dn == user.dn and not identity.is_proxy


def test_user_certificate_wins_over_a_proxy_in_the_environment(
    servers: Any, creds: Any, stranger: DevCA, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("X509_USER_PROXY", str(creds.user.proxy_file))  # would be presented without the options
    peer = servers("ext", "pyopenssl", creds.server_tls())
    user = creds.user
    with Client(
        peer.url(), config=creds.config(), timeout=10, certLocation=str(user.cert_file), keyLocation=str(user.key_file)
    ) as client:
        assert client.echo("x")["OK"]
    with Client(peer.url(), config=creds.config(), timeout=10) as client:
        assert client.echo("y")["OK"]
    assert [(i.dn, i.is_proxy) for i in peer.identities if i is not None] == [(user.dn, False), (user.dn, True)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_explicit_ca_dir_wins_over_x509_cert_dir(
    servers: Any, creds: Any, stranger: DevCA, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("X509_CERT_DIR", str(stranger.cert_dir))  # trusts nothing the server presents
    peer = servers("ext", backend, creds.server_tls())
    config = load_dict({}, "<no CALocation>")
    base = {"proxyLocation": str(creds.user.proxy_file), "config": config, "timeout": 10, "backend": backend}
    with Client(peer.url(), **base) as untrusting:
        refused = untrusting.echo("x")
    assert not refused["OK"]
    with Client(peer.url(), caLocation=str(creds.ca.cert_dir), **base) as client:
        assert client.echo("trusted")["Value"] == "trusted"


def test_missing_ca_dir_is_reported_not_replaced(creds: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X509_CERT_DIR", str(creds.ca.cert_dir))  # a valid fallback that must not be used
    client = Client(
        "dips://127.0.0.1:9/Test/Echo",
        proxyLocation=str(creds.user.proxy_file),
        caLocation=str(tmp_path / "nowhere"),
        config=load_dict({}, "<empty>"),
    )
    result = client.echo("x")  # like DISET, a client that cannot be set up reports it from each call
    assert not result["OK"] and "nowhere" in result["Message"] and "CA directory" in result["Message"]
