"""PEM loading, proxy detection and identity_from_chain."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from rpcframework.errors import CredentialsError, PeerVerificationError
from rpcframework.security.devca import DevCA, proxy_cert_info_der
from rpcframework.security.x509 import (
    GLOBUS_LIMITED_PROXY_OID,
    GT3_PROXY_CERT_INFO_OID,
    PPL_INDEPENDENT_OID,
    PPL_INHERIT_ALL_OID,
    PROXY_CERT_INFO_OID,
    der_oid,
    der_tlv,
    format_dn,
    identity_from_chain,
    load_pem_chain,
    load_pem_chain_file,
    load_pem_private_key,
    proxy_info,
)

USER = x509.Name.from_rfc4514_string("CN=Milosz Jerzy Zdybal,CN=765557,CN=mzdybal,OU=Users,DC=cern,DC=ch")


def with_cn(name: x509.Name, value: str) -> x509.Name:
    return x509.Name([*name.rdns, x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, value)])])


def rfc_ext(der: bytes, oid: x509.ObjectIdentifier = PROXY_CERT_INFO_OID) -> tuple[x509.ExtensionType, bool]:
    return x509.UnrecognizedExtension(oid, der), True


# ---------------------------------------------------------------------------------------------------------- PEM


def test_load_pem_chain_skips_keys_and_unknown_blocks(rpcframework_dev_ca: DevCA) -> None:
    data = rpcframework_dev_ca.default_user().proxy_file.read_bytes()
    extra = b"-----BEGIN DIRACX-----\nZm9vYmFy\n-----END DIRACX-----\n"
    chain = load_pem_chain(data + extra)
    assert len(chain) == 2
    assert format_dn(chain[1].subject) == rpcframework_dev_ca.default_user().dn
    assert load_pem_private_key(extra + data) is not None


def test_load_pem_chain_garbage() -> None:
    with pytest.raises(CredentialsError, match="no PEM certificate found"):
        load_pem_chain(b"hello, not a certificate")


def test_load_pem_chain_corrupt_block() -> None:
    with pytest.raises(CredentialsError, match=r"certificate number 1 .* corrupt"):
        load_pem_chain(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")


def test_load_pem_chain_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match=r"cannot read certificate file .*missing\.pem"):
        load_pem_chain_file(tmp_path / "missing.pem")
    bad = tmp_path / "bad.pem"
    bad.write_bytes(b"junk")
    with pytest.raises(CredentialsError, match=r"bad\.pem: no PEM certificate"):
        load_pem_chain_file(bad)


def test_load_private_key_missing() -> None:
    with pytest.raises(CredentialsError, match="no PEM private key"):
        load_pem_private_key(b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")


# ------------------------------------------------------------------------------------------------------ proxies


def test_proxy_cert_info_der_bytes() -> None:
    assert proxy_cert_info_der() == bytes.fromhex("300c300a06082b06010505071501")
    assert proxy_cert_info_der(limited=True) == der_tlv(0x30, der_tlv(0x30, der_oid(GLOBUS_LIMITED_PROXY_OID)))


def test_proxy_info_kinds(make_cert) -> None:
    user = make_cert(USER)
    assert proxy_info(user) is None
    inherit = make_cert(with_cn(USER, "1"), USER, extensions=[rfc_ext(proxy_cert_info_der())])
    info = proxy_info(inherit)
    assert info is not None and info.rfc3820 and not info.limited and info.policy == PPL_INHERIT_ALL_OID
    limited = make_cert(with_cn(USER, "2"), USER, extensions=[rfc_ext(proxy_cert_info_der(limited=True))])
    assert proxy_info(limited).limited
    independent_der = der_tlv(0x30, der_tlv(0x02, b"\x01") + der_tlv(0x30, der_oid(PPL_INDEPENDENT_OID)))
    independent = make_cert(with_cn(USER, "3"), USER, extensions=[rfc_ext(independent_der)])
    assert proxy_info(independent).policy == PPL_INDEPENDENT_OID
    gt3 = make_cert(with_cn(USER, "4"), USER, extensions=[rfc_ext(proxy_cert_info_der(), GT3_PROXY_CERT_INFO_OID)])
    assert proxy_info(gt3).policy == PPL_INHERIT_ALL_OID
    garbled = make_cert(with_cn(USER, "5"), USER, extensions=[rfc_ext(b"\x30\x05\x02")])
    assert proxy_info(garbled).limited


def test_legacy_globus_proxies(make_cert) -> None:
    legacy = proxy_info(make_cert(with_cn(USER, "proxy"), USER))
    assert legacy is not None and not legacy.rfc3820 and not legacy.limited
    assert proxy_info(make_cert(with_cn(USER, "limited proxy"), USER)).limited
    # A CN=proxy that does not extend the issuer's subject is an ordinary certificate.
    assert proxy_info(make_cert(with_cn(USER, "proxy"), x509.Name.from_rfc4514_string("CN=CA"))) is None


# ----------------------------------------------------------------------------------------------------- identity


def test_identity_of_plain_certificate(make_cert) -> None:
    ca = x509.Name.from_rfc4514_string("CN=Test CA,DC=ch")
    user = make_cert(USER, ca)
    ident = identity_from_chain([user], address=("127.0.0.1", 9135))
    assert ident.dn == ident.subject == "/DC=ch/DC=cern/OU=Users/CN=mzdybal/CN=765557/CN=Milosz Jerzy Zdybal"
    assert ident.issuer == "/DC=ch/CN=Test CA"
    assert not ident.is_proxy and not ident.is_limited_proxy
    assert ident.address == ("127.0.0.1", 9135)
    assert ident.chain == (user,)


def test_identity_of_proxy_chain_never_strips_cns(make_cert) -> None:
    # The PR #3214 shape: the user DN itself ends in CNs, so only walking the chain finds it.
    user = make_cert(USER)
    p1 = make_cert(with_cn(USER, "7287075501"), USER, extensions=[rfc_ext(proxy_cert_info_der())])
    p2_name = with_cn(p1.subject, "945804218")
    p2 = make_cert(p2_name, p1.subject, extensions=[rfc_ext(proxy_cert_info_der(limited=True))])
    ident = identity_from_chain([p2, p1, user])
    assert ident.dn == format_dn(USER)
    assert ident.subject.endswith("/CN=Milosz Jerzy Zdybal/CN=7287075501/CN=945804218")
    assert ident.issuer == format_dn(p1.subject)
    assert ident.is_proxy and ident.is_limited_proxy


def test_identity_not_after_is_earliest(make_cert) -> None:
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    user = make_cert(USER)
    proxy = make_cert(with_cn(USER, "1"), USER, extensions=[rfc_ext(proxy_cert_info_der())], not_after=soon)
    ident = identity_from_chain([proxy, user])
    assert ident.not_after == soon.replace(microsecond=0)
    assert 3500 < ident.seconds_left() <= 3600
    assert ident.seconds_left(now=soon + datetime.timedelta(days=1)) == 0.0


def test_identity_errors(make_cert) -> None:
    with pytest.raises(PeerVerificationError, match="empty"):
        identity_from_chain([])
    orphan = make_cert(with_cn(USER, "1"), USER, extensions=[rfc_ext(proxy_cert_info_der())])
    with pytest.raises(PeerVerificationError, match="only proxies"):
        identity_from_chain([orphan])


def test_identity_from_dev_ca_proxy(rpcframework_dev_ca: DevCA) -> None:
    user = rpcframework_dev_ca.default_user()
    assert user.proxy_file is not None
    ident = identity_from_chain(load_pem_chain(user.proxy_file.read_bytes()))
    assert ident.dn == user.dn == "/DC=org/DC=rpcframework/OU=Users/CN=dev-user"
    assert ident.is_proxy and not ident.is_limited_proxy
    assert ident.issuer == user.dn
