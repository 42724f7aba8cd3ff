"""The dev CA and DN helpers checked against the `openssl` command line (OpenSSL's own verifier and printers)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID, ObjectIdentifier
from support.certs import certificate_builder, rdn

from rpcframework.security.devca import DevCA
from rpcframework.security.x509 import (
    _OPENSSL_SHORT_NAMES,
    format_dn,
    identity_from_chain,
    load_pem_chain_file,
    openssl_name_hash,
)

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command line tool")
CLI = Path(sys.executable).with_name("rpcframework")


def openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert OPENSSL is not None
    return subprocess.run([OPENSSL, *map(str, args)], capture_output=True, text=True, check=False, timeout=30)


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    if not CLI.exists():
        pytest.skip(f"{CLI} is not installed (run scripts/venv.sh)")
    return subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True, check=False, timeout=60)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> DevCA:
    """An RSA-2048 CA made by the installed `rpcframework ca init`, as a user would."""
    directory = tmp_path_factory.mktemp("grid") / "ca"
    result = run_cli("ca", "init", directory)
    assert result.returncode == 0, result.stderr
    assert f"export X509_CERT_DIR={directory / 'certificates'}" in result.stdout
    return DevCA.load(directory)


def verify(ca: DevCA, target: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return openssl("verify", "-CApath", ca.cert_dir, *flags, "-untrusted", target, target)


def verify_proxy(ca: DevCA, proxy_file: Path) -> subprocess.CompletedProcess[str]:
    return verify(ca, proxy_file, "-crl_check_all", "-allow_proxy_certs")


# ------------------------------------------------------------------------------------------------- DN and hash


def self_signed(tmp_path: Path, name: x509.Name) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = certificate_builder(name, name, key.public_key(), serial=1).sign(key, hashes.SHA256())
    path = tmp_path / f"{openssl_name_hash(name)}-{id(name)}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def attr(oid: ObjectIdentifier, value: str, asn1: _ASN1Type | None = None) -> x509.NameAttribute[str]:
    return x509.NameAttribute(oid, value) if asn1 is None else x509.NameAttribute(oid, value, _type=asn1)


NAMES = [
    x509.Name.from_rfc4514_string("CN=alice,OU=Users,DC=cern,DC=ch"),
    x509.Name([attr(NameOID.COMMON_NAME, "a/b"), attr(NameOID.EMAIL_ADDRESS, "alice@example.org")]),
    x509.Name([attr(NameOID.DOMAIN_COMPONENT, "org"), attr(NameOID.COMMON_NAME, "Zoë  Ünï 名前")]),
    x509.Name(
        [rdn(attr(NameOID.DOMAIN_COMPONENT, "org")), rdn(attr(NameOID.USER_ID, "u1"), attr(NameOID.COMMON_NAME, "x+y"))]
    ),
    x509.Name([attr(NameOID.COMMON_NAME, "tab\there  "), attr(ObjectIdentifier("1.2.3.4.5"), "odd")]),
    x509.Name([attr(NameOID.COMMON_NAME, "Ωmega Wide", _ASN1Type.BMPString)]),
    x509.Name([attr(NameOID.COMMON_NAME, "  MiXeD   Case ", _ASN1Type.PrintableString)]),
    x509.Name([attr(NameOID.COMMON_NAME, "ia5", _ASN1Type.IA5String), attr(NameOID.SERIAL_NUMBER, "007")]),
    x509.Name(
        [
            attr(ObjectIdentifier(oid), "CH" if oid.endswith(("2.5.4.6", "60.2.1.3")) else f"v{i}")
            for i, oid in enumerate(_OPENSSL_SHORT_NAMES)
            if oid != "2.5.4.45"
        ]
    ),
]


@pytest.mark.parametrize("name", NAMES, ids=lambda n: format_dn(n)[:40])
def test_format_dn_matches_openssl_compat(tmp_path: Path, name: x509.Name) -> None:
    pem = self_signed(tmp_path, name)
    result = openssl("x509", "-in", pem, "-noout", "-subject", "-nameopt", "compat")
    assert result.returncode == 0, result.stderr
    assert f"subject={format_dn(name)}" == result.stdout.rstrip("\n")


@pytest.mark.parametrize("name", NAMES, ids=lambda n: format_dn(n)[:40])
def test_subject_hash_matches_openssl(tmp_path: Path, name: x509.Name) -> None:
    pem = self_signed(tmp_path, name)
    result = openssl("x509", "-in", pem, "-noout", "-hash")
    assert result.stdout.strip() == openssl_name_hash(name)


def test_ca_file_named_by_openssl_hash(ca: DevCA) -> None:
    result = openssl("x509", "-in", ca.directory / "ca" / "cacert.pem", "-noout", "-hash")
    assert (ca.cert_dir / f"{result.stdout.strip()}.0").is_file()
    assert (ca.cert_dir / f"{result.stdout.strip()}.r0").is_file()
    crl = openssl("crl", "-in", ca.crl_file, "-noout", "-CAfile", ca.ca_cert_file)
    assert "verify OK" in crl.stderr + crl.stdout


# ---------------------------------------------------------------------------------------------------- verifying


def test_openssl_accepts_host_and_user(ca: DevCA) -> None:
    for cred in (ca.default_host(), ca.default_user()):
        result = verify(ca, cred.cert_file, "-crl_check")
        assert result.returncode == 0 and ": OK" in result.stdout, result.stdout + result.stderr
    host = verify(ca, ca.default_host().cert_file, "-purpose", "sslserver", "-verify_hostname", "localhost")
    assert host.returncode == 0, host.stderr
    ip = verify(ca, ca.default_host().cert_file, "-verify_ip", "::1")
    assert ip.returncode == 0, ip.stderr


def test_openssl_rejects_revoked_user(ca: DevCA, tmp_path: Path) -> None:
    issued = run_cli("ca", "issue-user", ca.directory, "mallory", "--out-dir", tmp_path / "m")
    assert issued.returncode == 0 and issued.stdout.splitlines()[-1].endswith("/CN=mallory")
    cert, proxy = tmp_path / "m" / "usercert.pem", tmp_path / "m" / "proxy.pem"
    assert verify(ca, cert, "-crl_check").returncode == 0
    assert verify_proxy(ca, proxy).returncode == 0
    revoked = run_cli("ca", "revoke", ca.directory, cert)
    assert revoked.returncode == 0, revoked.stderr
    result = verify(ca, cert, "-crl_check")
    assert result.returncode != 0 and "certificate revoked" in result.stdout + result.stderr
    result = verify_proxy(ca, proxy)
    assert result.returncode != 0 and "certificate revoked" in result.stdout + result.stderr
    # The default user is untouched by the new CRL.
    assert verify(ca, ca.default_user().cert_file, "-crl_check").returncode == 0


def test_openssl_accepts_proxy_chains(ca: DevCA, tmp_path: Path) -> None:
    proxy = ca.default_user().proxy_file
    assert proxy is not None
    result = verify_proxy(ca, proxy)
    assert result.returncode == 0, result.stdout + result.stderr
    without_flag = verify(ca, proxy, "-crl_check_all")
    assert without_flag.returncode != 0  # OpenSSL refuses proxies unless told to allow them
    second = tmp_path / "proxy2.pem"
    made = run_cli("ca", "proxy", ca.directory, "--cert", proxy, "--out", second, "--limited", "--hours", "2")
    assert made.returncode == 0, made.stderr
    result = verify_proxy(ca, second)
    assert result.returncode == 0, result.stdout + result.stderr
    ident = identity_from_chain(load_pem_chain_file(second))
    assert ident.dn == ca.default_user().dn and ident.is_proxy and ident.is_limited_proxy
    assert len(ident.chain) == 3


def test_openssl_sees_validity_options(ca: DevCA, tmp_path: Path) -> None:
    old = run_cli("ca", "issue-user", ca.directory, "old", "--not-after", "2021-01-01", "--out-dir", tmp_path / "o")
    assert old.returncode == 0, old.stderr
    result = verify(ca, tmp_path / "o" / "usercert.pem")
    assert "certificate has expired" in result.stdout + result.stderr
    early = run_cli(
        "ca", "issue-host", ca.directory, "early", "--not-before", "2045-01-01", "--out-dir", tmp_path / "e"
    )
    assert early.returncode == 0, early.stderr
    result = verify(ca, tmp_path / "e" / "hostcert.pem")
    assert "certificate is not yet valid" in result.stdout + result.stderr
    dates = openssl("x509", "-in", tmp_path / "e" / "hostcert.pem", "-noout", "-startdate")
    assert "Jan  1 00:00:00 2045 GMT" in dates.stdout


def test_cli_usage_error_exit_code(tmp_path: Path) -> None:
    result = run_cli("ca", "issue-user")
    assert result.returncode == 2 and "usage:" in result.stderr
    result = run_cli("ca", "issue-user", tmp_path / "nothing", "x")
    assert result.returncode == 1 and "rpcframework ca init" in result.stderr
