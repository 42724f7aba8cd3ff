"""RevocationList: the CRLs of a CA directory, verified, applied to a chain as the handshake's crl_mode would."""

from __future__ import annotations

import datetime
import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from rpcframework.security.devca import DevCA
from rpcframework.security.revocation import RevocationList
from rpcframework.security.x509 import load_pem_chain_file


@pytest.fixture(scope="module")
def two_cas(tmp_path_factory: pytest.TempPathFactory) -> tuple[DevCA, DevCA]:
    root = tmp_path_factory.mktemp("revocation")
    return DevCA.init(root / "ca", key_type="ec"), DevCA.init(root / "other", key_type="ec", ca_name="Other CA")


def test_a_revoked_user_is_found_in_the_chain_of_its_proxy(two_cas: tuple[DevCA, DevCA], tmp_path: Path) -> None:
    ca, _ = two_cas
    user, other = ca.issue_user("revocation-user"), ca.issue_user("revocation-other")
    ca.revoke(user.cert_file)
    crls = RevocationList.from_ca_dir(ca.cert_dir)
    proxy_chain = load_pem_chain_file(user.proxy_file)  # proxy, user certificate
    assert crls.revoked_certificate(proxy_chain, "chain") == proxy_chain[1]
    assert crls.revoked_certificate(proxy_chain, "leaf") is None, "leaf mode looks at the proxy only, as OpenSSL"
    assert crls.revoked_certificate(proxy_chain, "off") is None
    assert crls.revoked_certificate(load_pem_chain_file(user.cert_file), "leaf") is not None
    assert crls.revoked_certificate(load_pem_chain_file(other.proxy_file), "chain") is None
    assert "CN=revocation-user" in crls.describe(proxy_chain[1])


def test_a_crl_that_its_ca_did_not_sign_is_ignored(two_cas: tuple[DevCA, DevCA], tmp_path: Path) -> None:
    ca, other = two_cas
    victim = ca.issue_user("revocation-victim")
    serial = load_pem_chain_file(victim.cert_file)[0].serial_number
    directory = tmp_path / "certificates"
    shutil.copytree(ca.cert_dir, directory)
    # A CRL that names this CA as its issuer and revokes the victim, signed with another CA's key.
    other_key = serialization.load_pem_private_key((other.directory / "ca" / "cakey.pem").read_bytes(), None)
    now = datetime.datetime.now(datetime.UTC)
    revoked = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
    forged = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(now)
        .next_update(now + datetime.timedelta(days=1))
        .add_revoked_certificate(revoked)
        .sign(other_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    (directory / f"{ca.subject_hash}.r1").write_bytes(forged.public_bytes(serialization.Encoding.PEM))
    (directory / f"{ca.subject_hash}.r2").write_bytes(b"not a CRL")
    crls = RevocationList.from_ca_dir(directory)
    assert crls.revoked_certificate(load_pem_chain_file(victim.cert_file), "chain") is None
    assert RevocationList.from_ca_dir(tmp_path / "missing").revoked == {}
    assert RevocationList.from_ca_dir(None).revoked == {}


def test_a_serial_is_revoked_only_by_its_own_issuers_crl(two_cas: tuple[DevCA, DevCA]) -> None:
    ca, other = two_cas
    user = ca.issue_user("revocation-same-serial")
    cert = load_pem_chain_file(user.cert_file)[0]
    # The same serial number revoked by another CA (serials are unique per issuer only) does not revoke it.
    foreign = RevocationList({other.cert.subject: frozenset({cert.serial_number})})
    assert foreign.serials == {cert.serial_number}
    assert foreign.revoked_certificate([cert], "chain") is None
    own = RevocationList({other.cert.subject: frozenset({1}), ca.cert.subject: frozenset({cert.serial_number})})
    assert own.revoked_certificate([cert], "leaf") is cert
    # CRLs that revoke nothing (a fresh CA's) answer at once.
    assert RevocationList({ca.cert.subject: frozenset()}).revoked_certificate([cert], "chain") is None
