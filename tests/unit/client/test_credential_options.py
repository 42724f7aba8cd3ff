"""``certLocation``/``keyLocation`` (a user certificate instead of a proxy) and ``caLocation`` (the CA directory):
validated once by ``ClientOptions``, honoured by ``BaseClient`` before the proxy and CA lookups, kept out of stubs.
No sockets: a ``BaseClient`` only resolves credentials when it is built."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rpcframework.client import Client
from rpcframework.client.base import BaseClient
from rpcframework.client.options import ClientOptions
from rpcframework.config import load_dict
from rpcframework.errors import ConfigurationError, CredentialsError
from rpcframework.protocol import HostCredentials, NoExtraCredentials
from rpcframework.security.devca import DevCA

from .conftest import RecordingTarget

URL = "dips://127.0.0.1:9135/Test/Echo"


def _base(environ: dict[str, str], **options: Any) -> BaseClient:
    options.setdefault("config", load_dict({}, "<empty>"))
    return BaseClient(URL, ClientOptions.build(options), environ=environ)


@pytest.fixture
def ca(rpcframework_dev_ca: DevCA) -> DevCA:
    return rpcframework_dev_ca


@pytest.fixture
def other_ca_dir(tmp_path: Path) -> str:
    directory = tmp_path / "other-certificates"
    directory.mkdir()
    return str(directory)


def test_names_are_valid_options() -> None:
    names = ClientOptions.names()
    for name in ("certLocation", "keyLocation", "caLocation"):
        assert name in names
    options = ClientOptions.build({"certLocation": "/c.pem", "keyLocation": "/k.pem", "caLocation": "/ca"})
    assert (options.certLocation, options.keyLocation, options.caLocation) == ("/c.pem", "/k.pem", "/ca")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"certLocation": "/c.pem"}, "go together"),
        ({"keyLocation": "/k.pem"}, "go together"),
        ({"certLocation": "/c.pem", "keyLocation": "/k.pem", "proxyLocation": "/p"}, "either proxyLocation"),
        ({"certLocation": "/c.pem", "keyLocation": "/k.pem", "useCertificates": True}, "host certificate"),
        ({"certLocation": "", "keyLocation": "/k.pem"}, "non-empty string"),
        ({"caLocation": 3}, "non-empty string"),
    ],
)
def test_invalid_combinations_are_refused_once(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ClientOptions.build(options)


def test_user_certificate_wins_over_the_proxy_lookup(ca: DevCA) -> None:
    user = ca.default_user()
    environ = {"X509_USER_PROXY": str(ca.directory / "proxy.pem"), "X509_CERT_DIR": str(ca.cert_dir)}
    base = _base(environ, certLocation=str(user.cert_file), keyLocation=str(user.key_file))
    assert base.tls is not None
    assert (base.tls.cert_file, base.tls.key_file) == (str(user.cert_file), str(user.key_file))
    assert base.extra_credentials() == NoExtraCredentials()


def test_user_certificate_wins_over_the_configured_host_certificate(ca: DevCA) -> None:
    user, host = ca.default_user(), ca.default_host()
    security = {"UseServerCertificate": "yes", "CertFile": str(host.cert_file), "KeyFile": str(host.key_file)}
    config = load_dict({"DIRAC": {"Security": security}}, "<host>")
    environ = {"X509_CERT_DIR": str(ca.cert_dir)}
    base = _base(environ, certLocation=str(user.cert_file), keyLocation=str(user.key_file), config=config)
    assert base.tls is not None and base.tls.cert_file == str(user.cert_file)
    assert not base.use_certificates
    assert base.extra_credentials() == NoExtraCredentials()
    host_client = _base(environ, config=config)  # without the options the configuration still decides
    assert host_client.tls is not None and host_client.tls.cert_file == str(host.cert_file)
    assert host_client.extra_credentials() == HostCredentials()


def test_missing_user_certificate_is_an_error_not_a_fallback(ca: DevCA, tmp_path: Path) -> None:
    environ = {"X509_USER_PROXY": str(ca.directory / "proxy.pem"), "X509_CERT_DIR": str(ca.cert_dir)}
    with pytest.raises(CredentialsError, match="does not exist"):
        _base(environ, certLocation=str(tmp_path / "nope.pem"), keyLocation=str(ca.default_user().key_file))


def test_ca_location_wins_over_configuration_and_environment(ca: DevCA, other_ca_dir: str) -> None:
    environ = {"X509_USER_PROXY": str(ca.directory / "proxy.pem"), "X509_CERT_DIR": other_ca_dir}
    config = load_dict({"DIRAC": {"Security": {"CALocation": other_ca_dir}}}, "<cs>")
    base = _base(environ, caLocation=str(ca.cert_dir), config=config)
    assert base.tls is not None and base.tls.ca_dir == str(ca.cert_dir)
    from_environment = _base(environ).tls
    assert from_environment is not None and from_environment.ca_dir == other_ca_dir


def test_missing_ca_location_is_an_error_even_with_skip_ca_check(ca: DevCA, tmp_path: Path) -> None:
    environ = {"X509_USER_PROXY": str(ca.directory / "proxy.pem")}
    with pytest.raises(CredentialsError, match="CA directory"):
        _base(environ, caLocation=str(tmp_path / "nowhere"), skipCACheck=True)


def test_locations_stay_out_of_the_stub(target: RecordingTarget) -> None:
    client = Client(
        "Test/Echo",
        transport=target,
        certLocation="/home/u/.globus/usercert.pem",
        keyLocation="/home/u/.globus/userkey.pem",
        caLocation="/etc/grid-security/certificates",
        setup="Production",
    )
    stub = client.echo("x")["rpcStub"]
    assert stub[0][1] == {"timeout": 600.0, "setup": "Production"}
