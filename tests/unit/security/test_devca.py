"""DevCA: layout, certificate contents, proxies, validity options, revocation."""

from __future__ import annotations

import datetime
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from rpcframework.errors import ConfigurationError, CredentialsError
from rpcframework.security.devca import DevCA
from rpcframework.security.x509 import (
    PROXY_CERT_INFO_OID,
    format_dn,
    identity_from_chain,
    load_pem_chain,
    load_pem_chain_file,
    load_pem_private_key,
    openssl_name_hash,
)

UTC = datetime.UTC


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_layout(rpcframework_dev_ca: DevCA) -> None:
    root = rpcframework_dev_ca.directory
    h = openssl_name_hash(rpcframework_dev_ca.cert.subject)
    assert rpcframework_dev_ca.cert_dir == root / "certificates"
    assert sorted(p.name for p in rpcframework_dev_ca.cert_dir.iterdir()) == [f"{h}.0", f"{h}.r0"]
    for name in ("hostcert.pem", "hostkey.pem", "usercert.pem", "userkey.pem", "proxy.pem", "ca/cacert.pem"):
        assert (root / name).is_file(), name
    for key in ("hostkey.pem", "userkey.pem", "proxy.pem", "ca/cakey.pem"):
        assert mode(root / key) == 0o600, key
    assert mode(root / "hostcert.pem") == 0o644
    assert rpcframework_dev_ca.dn == "/DC=org/DC=rpcframework/CN=rpcframework Dev CA"


def test_ca_name_gives_another_subject_and_hash(rpcframework_dev_ca: DevCA, tmp_path: Path) -> None:
    other = DevCA.init(tmp_path / "other", key_type="ec", ca_name="Second Dev CA")
    assert other.dn == "/DC=org/DC=rpcframework/CN=Second Dev CA"
    assert other.subject_hash != rpcframework_dev_ca.subject_hash
    assert other.ca_cert_file.name == f"{other.subject_hash}.0" and other.crl_file.is_file()
    with pytest.raises(ConfigurationError, match="must not be empty"):
        DevCA.init(tmp_path / "blank", key_type="ec", ca_name=" ")


def test_ca_certificate(rpcframework_dev_ca: DevCA) -> None:
    ca = load_pem_chain_file(rpcframework_dev_ca.ca_cert_file)[0]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    assert isinstance(ca.public_key(), rsa.RSAPublicKey) and ca.public_key().key_size == 2048


def test_crl_is_signed_and_fresh(rpcframework_dev_ca: DevCA) -> None:
    crl = x509.load_pem_x509_crl(rpcframework_dev_ca.crl_file.read_bytes())
    assert crl.is_signature_valid(rpcframework_dev_ca.cert.public_key())
    assert crl.next_update_utc is not None
    assert crl.next_update_utc > datetime.datetime.now(UTC) + datetime.timedelta(days=300)


def test_a_new_ca_revokes_nothing(fresh_ca: DevCA) -> None:
    # Not on the session CA: other folders revoke their own test users in it.
    assert len(x509.load_pem_x509_crl(fresh_ca.crl_file.read_bytes())) == 0


def test_host_certificate(rpcframework_dev_ca: DevCA) -> None:
    host = rpcframework_dev_ca.default_host()
    cert = load_pem_chain_file(host.cert_file)[0]
    assert host.dn == "/DC=org/DC=rpcframework/OU=Hosts/CN=localhost"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert isinstance(load_pem_private_key(host.key_file.read_bytes()), rsa.RSAPrivateKey)


def test_user_certificate_can_sign_proxies(rpcframework_dev_ca: DevCA) -> None:
    cert = load_pem_chain_file(rpcframework_dev_ca.default_user().cert_file)[0]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature


def test_proxy_file_layout_and_rules(rpcframework_dev_ca: DevCA) -> None:
    user = rpcframework_dev_ca.default_user()
    assert user.proxy_file is not None
    data = user.proxy_file.read_bytes()
    # Grid layout: proxy certificate, its unencrypted key, then the user certificate.
    markers = [line for line in data.splitlines() if line.startswith(b"-----BEGIN")]
    assert markers == [
        b"-----BEGIN CERTIFICATE-----",
        b"-----BEGIN RSA PRIVATE KEY-----",
        b"-----BEGIN CERTIFICATE-----",
    ]
    proxy, signer = load_pem_chain(data)
    assert signer.subject == load_pem_chain_file(user.cert_file)[0].subject
    assert proxy.issuer == signer.subject
    assert list(proxy.subject.rdns[:-1]) == list(signer.subject.rdns)
    assert format_dn(proxy.subject) == f"{user.dn}/CN={proxy.serial_number}"
    ext = proxy.extensions.get_extension_for_oid(PROXY_CERT_INFO_OID)
    assert ext.critical and ext.value.value == bytes.fromhex("300c300a06082b06010505071501")
    with pytest.raises(x509.ExtensionNotFound):
        proxy.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    usage = proxy.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment
    lifetime = proxy.not_valid_after_utc - proxy.not_valid_before_utc
    assert datetime.timedelta(hours=12) <= lifetime <= datetime.timedelta(hours=12, minutes=6)
    key = load_pem_private_key(data)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048


def test_proxy_of_proxy_and_limited(fresh_ca: DevCA, tmp_path: Path) -> None:
    first = fresh_ca.default_user().proxy_file
    assert first is not None
    out = tmp_path / "p2.pem"
    cred = fresh_ca.issue_proxy(first, first, out, hours=1, limited=True)
    assert cred.proxy_file == out and cred.dn == fresh_ca.default_user().dn
    chain = load_pem_chain(out.read_bytes())
    assert len(chain) == 3
    ident = identity_from_chain(chain)
    assert ident.dn == fresh_ca.default_user().dn and ident.is_limited_proxy
    assert chain[0].issuer == chain[1].subject
    assert mode(out) == 0o600


def test_proxy_never_outlives_its_signer(fresh_ca: DevCA, tmp_path: Path) -> None:
    soon = datetime.datetime.now(UTC) + datetime.timedelta(hours=2)
    user = fresh_ca.issue_user("short", not_after=soon)
    proxy = load_pem_chain_file(user.proxy_file)[0]
    assert proxy.not_valid_after_utc <= soon


def test_expired_and_not_yet_valid(fresh_ca: DevCA) -> None:
    past = datetime.datetime(2020, 1, 1, tzinfo=UTC)
    expired = fresh_ca.issue_user("old", not_after=past)
    (cert,) = load_pem_chain_file(expired.cert_file)
    assert cert.not_valid_after_utc == past and cert.not_valid_before_utc < past
    assert load_pem_chain_file(expired.proxy_file)[0].not_valid_after_utc <= past
    future = datetime.datetime.now(UTC).replace(microsecond=0) + datetime.timedelta(days=10)
    early = fresh_ca.issue_host("early.example", not_before=future, days=2)
    (cert,) = load_pem_chain_file(early.cert_file)
    assert cert.not_valid_before_utc == future
    assert cert.not_valid_after_utc == future + datetime.timedelta(days=2)
    with pytest.raises(ConfigurationError, match="before it starts"):
        fresh_ca.issue_user("bad", not_before=future, not_after=past)


def test_issue_user_and_host_default_directories(fresh_ca: DevCA) -> None:
    user = fresh_ca.issue_user("alice")
    assert user.cert_file == fresh_ca.directory / "users" / "alice" / "usercert.pem"
    assert user.dn == "/DC=org/DC=rpcframework/OU=Users/CN=alice"
    host = fresh_ca.issue_host("svc.example.org", sans=["DNS:svc.example.org", "IP:10.0.0.1", "alias"])
    assert host.cert_file == fresh_ca.directory / "hosts" / "svc.example.org" / "hostcert.pem"
    assert host.proxy_file is None
    san = load_pem_chain_file(host.cert_file)[0].extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == ["svc.example.org", "alias"]
    odd = fresh_ca.issue_user("../evil")
    assert odd.cert_file.parent.parent == fresh_ca.directory / "users"


def _sans(path: Path) -> list[str]:
    san = load_pem_chain_file(path)[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(name.value) for name in san]


def test_only_the_cas_own_host_answers_for_loopback_names_by_default(fresh_ca: DevCA) -> None:
    """Otherwise every dev host could pose as every local service (issue 13.8)."""
    assert _sans(fresh_ca.default_host().cert_file) == ["localhost", "127.0.0.1", "::1"]
    assert _sans(fresh_ca.issue_host("worker.example.org").cert_file) == ["worker.example.org"]
    assert _sans(fresh_ca.issue_host("localhost", directory=fresh_ca.directory / "lh").cert_file) == [
        "localhost",
        "127.0.0.1",
        "::1",
    ]


def test_revoke_rewrites_crl(fresh_ca: DevCA) -> None:
    victim = fresh_ca.issue_user("victim")
    serial = fresh_ca.revoke(victim.proxy_file)
    assert serial == load_pem_chain_file(victim.cert_file)[0].serial_number
    assert fresh_ca.revoked_serials() == [serial]
    fresh_ca.revoke(victim.cert_file)  # idempotent
    other = fresh_ca.issue_host("gone")
    fresh_ca.revoke(other.cert_file)
    crl = x509.load_pem_x509_crl(fresh_ca.crl_file.read_bytes())
    assert len(crl) == 2
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 3


def test_revoke_foreign_certificate(fresh_ca: DevCA, rpcframework_dev_ca: DevCA) -> None:
    with pytest.raises(CredentialsError, match="no certificate issued by"):
        fresh_ca.revoke(rpcframework_dev_ca.default_user().cert_file)


def test_load_round_trip(fresh_ca: DevCA) -> None:
    loaded = DevCA.load(fresh_ca.directory)
    assert loaded.cert == fresh_ca.cert and loaded.key_type == "ec"
    assert isinstance(load_pem_private_key(loaded.issue_user("x").key_file.read_bytes()), ec.EllipticCurvePrivateKey)


def test_init_refuses_existing_and_load_refuses_missing(fresh_ca: DevCA, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="already holds a dev CA"):
        DevCA.init(fresh_ca.directory, key_type="ec")
    with pytest.raises(ConfigurationError, match="rpcframework ca init"):
        DevCA.load(tmp_path / "nowhere")


def test_bad_key_type(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="unknown key type"):
        DevCA.init(tmp_path, key_type="dsa")
