"""A development certificate authority that writes the grid layout: hashed CA directory, CRL, host/user certs, proxies.

For tests and local development only; it keeps its private key unencrypted in ``DIR/ca/cakey.pem``. Layout::

    DIR/ca/cacert.pem, DIR/ca/cakey.pem       the CA itself (key mode 0600)
    DIR/certificates/<hash>.0, <hash>.r0      the trusted-CA directory: CA cert and its CRL, named by subject hash
    DIR/hostcert.pem, DIR/hostkey.pem         "localhost" host credential (from init)
    DIR/usercert.pem, DIR/userkey.pem         default user credential (from init)
    DIR/proxy.pem                             RFC 3820 proxy of that user: proxy cert, its key, user cert
    DIR/users/NAME/..., DIR/hosts/HOST/...    further credentials from issue_user / issue_host

Keys are RSA 2048 by default, as DIRAC requires (smaller keys fail OpenSSL's security level). Generating one takes
tens of milliseconds; tests that are not about compatibility may pass ``key_type="ec"``.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from rpcframework.errors import ConfigurationError, CredentialsError
from rpcframework.security.x509 import (
    GLOBUS_LIMITED_PROXY_OID,
    PPL_INHERIT_ALL_OID,
    PROXY_CERT_INFO_OID,
    der_oid,
    der_tlv,
    dirac_group_extension,
    format_dn,
    identity_from_chain,
    load_pem_chain_file,
    load_pem_private_key,
    openssl_name_hash,
)

__all__ = ["DEFAULT_CA_NAME", "DevCA", "IssuedCredential", "KeyType", "proxy_cert_info_der"]

logger = logging.getLogger(__name__)

KeyType = Literal["rsa", "ec"]
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

_BASE_NAME = [("DC", "org"), ("DC", "rpcframework")]
_ATTR_OIDS = {"DC": NameOID.DOMAIN_COMPONENT, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME, "CN": NameOID.COMMON_NAME}
# Backdate new certificates a little so that peers with slightly slow clocks accept them at once.
_CLOCK_SKEW = datetime.timedelta(minutes=5)
_DEFAULT_HOST_SANS = ("DNS:localhost", "IP:127.0.0.1", "IP:::1")
#: The CN of a dev CA unless :meth:`DevCA.init` is given another.
DEFAULT_CA_NAME = "rpcframework Dev CA"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _name(*parts: tuple[str, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(_ATTR_OIDS[key], value) for key, value in parts])


def _aware(moment: datetime.datetime) -> datetime.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def _validity(
    default: datetime.timedelta, not_before: datetime.datetime | None, not_after: datetime.datetime | None
) -> tuple[datetime.datetime, datetime.datetime]:
    """Resolve a validity window; either end may be given, so already-expired and not-yet-valid certs are possible."""
    if not_before is not None:
        start = _aware(not_before)
        end = _aware(not_after) if not_after is not None else start + default
    elif not_after is not None:
        end = _aware(not_after)
        start = min(_now() - _CLOCK_SKEW, end - default)
    else:
        start = _now() - _CLOCK_SKEW
        end = start + _CLOCK_SKEW + default
    if end <= start:
        raise ConfigurationError(
            f"certificate validity ends ({end.isoformat()}) before it starts ({start.isoformat()})"
        )
    return start, end


def _generate_key(key_type: KeyType, key_size: int) -> PrivateKey:
    started = time.perf_counter()
    key: PrivateKey
    if key_type == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    elif key_type == "ec":
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        raise ConfigurationError(f"unknown key type {key_type!r}: use 'rsa' or 'ec'")
    logger.debug("generated %s key in %.3f s", key_type, time.perf_counter() - started)
    return key


def _key_pem(key: PrivateKey) -> bytes:
    # Traditional "RSA PRIVATE KEY" PEM, unencrypted: what grid-proxy-init and DIRAC write into proxy files.
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _make_dirs(directory: Path) -> None:
    """Create ``directory`` and its missing parents with mode 0755 at most: under ``umask 000`` a plain ``mkdir``
    makes 0777 directories, where anyone could swap the credentials inside."""
    missing = []
    for candidate in (directory, *directory.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    for candidate in reversed(missing):
        try:
            candidate.mkdir(mode=0o755)  # the umask can only take permissions away from 0755
        except FileExistsError:  # made meanwhile by another writer: fine if it is a directory
            if not candidate.is_dir():
                raise


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    """Write atomically (readers such as OpenSSL's hashed-directory lookup may poll the file); keys get mode 0600,
    other files 0644, new directories 0755, whatever the umask (a stricter umask is kept)."""
    _make_dirs(path.parent)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def proxy_cert_info_der(*, limited: bool = False) -> bytes:
    """DER of an RFC 3820 ``ProxyCertInfo`` without path length: inheritAll, or the Globus limited policy."""
    policy = GLOBUS_LIMITED_PROXY_OID if limited else PPL_INHERIT_ALL_OID
    return der_tlv(0x30, der_tlv(0x30, der_oid(policy)))


def _signing_hash(key: PrivateKey) -> hashes.SHA256:
    del key  # SHA-256 for both key types; kept as a function so the choice lives in one place
    return hashes.SHA256()


@dataclass(frozen=True)
class IssuedCredential:
    """Files of a credential made by :class:`DevCA`; ``proxy_file`` is None for hosts. ``dn`` is in grid form."""

    cert_file: Path
    key_file: Path
    proxy_file: Path | None
    dn: str


class DevCA:
    """A file-backed development CA. Build with :meth:`init` (new) or :meth:`load` (existing directory)."""

    def __init__(self, directory: Path, cert: x509.Certificate, key: PrivateKey, *, key_type: KeyType = "rsa") -> None:
        self.directory = directory
        self.cert = cert
        self._key = key
        self.key_type: KeyType = key_type
        self.key_size = 2048

    # ------------------------------------------------------------------------------------------------ construction

    @classmethod
    def init(
        cls,
        directory: str | os.PathLike[str],
        *,
        key_type: KeyType = "rsa",
        key_size: int = 2048,
        ca_days: int = 3650,
        user_name: str = "dev-user",
        host_name: str = "localhost",
        days: int = 365,
        proxy_hours: float = 12,
        ca_name: str = DEFAULT_CA_NAME,
    ) -> DevCA:
        """Create a CA in ``directory`` (which must not hold one) plus a host credential, a user and its proxy.

        ``ca_name`` is the CA's CN (``/DC=org/DC=rpcframework/CN=<ca_name>``). Give a second CA another name when
        both are to be trusted from one hashed directory: the files there are named by the subject's hash.
        """
        root = Path(directory)
        if (root / "ca" / "cakey.pem").exists():
            raise ConfigurationError(f"{root} already holds a dev CA: use DevCA.load() or pick an empty directory")
        if not ca_name.strip():
            raise ConfigurationError("the dev CA's name (CN) must not be empty")
        key = _generate_key(key_type, key_size)
        subject = _name(*_BASE_NAME, ("CN", ca_name))
        start, end = _validity(datetime.timedelta(days=ca_days), None, None)
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, _signing_hash(key))
        )
        _write(root / "ca" / "cakey.pem", _key_pem(key), private=True)
        _write(root / "ca" / "cacert.pem", _cert_pem(cert))
        ca = cls(root, cert, key, key_type=key_type)
        ca.key_size = key_size
        _write(ca.cert_dir / f"{ca.subject_hash}.0", _cert_pem(cert))
        ca._write_crl([])
        # Only the CA's own host answers for the loopback names by default (see issue_host).
        own_names = list(dict.fromkeys([f"DNS:{host_name}", *_DEFAULT_HOST_SANS]))
        ca.issue_host(host_name, days=days, directory=root, sans=own_names)
        ca.issue_user(user_name, days=days, directory=root, proxy_hours=proxy_hours)
        logger.info("dev CA %s initialised in %s", format_dn(subject), root)
        return ca

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> DevCA:
        """Open a CA made by :meth:`init`; new keys follow the type of the CA's own key."""
        root = Path(directory)
        try:
            key_data = (root / "ca" / "cakey.pem").read_bytes()
        except OSError as exc:
            raise ConfigurationError(
                f"{root} is not a dev CA directory ({exc.strerror}): create one with `rpcframework ca init {root}`"
            ) from exc
        key = load_pem_private_key(key_data)
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise CredentialsError(f"{root}/ca/cakey.pem: unsupported key type {type(key).__name__}")
        cert = load_pem_chain_file(root / "ca" / "cacert.pem")[0]
        ca = cls(root, cert, key, key_type="rsa" if isinstance(key, rsa.RSAPrivateKey) else "ec")
        if isinstance(key, rsa.RSAPrivateKey):
            ca.key_size = key.key_size
        return ca

    # ---------------------------------------------------------------------------------------------------- paths

    @property
    def cert_dir(self) -> Path:
        """The hashed trusted-CA directory (what ``X509_CERT_DIR`` should point to)."""
        return self.directory / "certificates"

    @property
    def subject_hash(self) -> str:
        return openssl_name_hash(self.cert.subject)

    @property
    def ca_cert_file(self) -> Path:
        return self.cert_dir / f"{self.subject_hash}.0"

    @property
    def crl_file(self) -> Path:
        return self.cert_dir / f"{self.subject_hash}.r0"

    @property
    def dn(self) -> str:
        return format_dn(self.cert.subject)

    def default_host(self) -> IssuedCredential:
        """The host credential written by :meth:`init` (``DIR/hostcert.pem``)."""
        return self._existing(self.directory / "hostcert.pem", self.directory / "hostkey.pem", None)

    def default_user(self) -> IssuedCredential:
        """The user credential and proxy written by :meth:`init` (``DIR/usercert.pem``, ``DIR/proxy.pem``)."""
        d = self.directory
        return self._existing(d / "usercert.pem", d / "userkey.pem", d / "proxy.pem")

    def _existing(self, cert_file: Path, key_file: Path, proxy_file: Path | None) -> IssuedCredential:
        dn = format_dn(load_pem_chain_file(cert_file)[0].subject)
        return IssuedCredential(cert_file, key_file, proxy_file, dn)

    # ------------------------------------------------------------------------------------------------- issuing

    def issue_user(
        self,
        name: str,
        *,
        days: int = 365,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
        directory: str | os.PathLike[str] | None = None,
        proxy_hours: float = 12,
    ) -> IssuedCredential:
        """Issue ``/DC=org/DC=rpcframework/OU=Users/CN=<name>`` with a proxy, in ``directory`` or DIR/users/NAME.

        The proxy uses the same validity window as the certificate when that is expired or not yet valid.
        """
        subject = _name(*_BASE_NAME, ("OU", "Users"), ("CN", name))
        target = Path(directory) if directory is not None else self.directory / "users" / _safe(name)
        start, end = _validity(datetime.timedelta(days=days), not_before, not_after)
        extensions: list[tuple[x509.ExtensionType, bool]] = [
            (x509.BasicConstraints(ca=False, path_length=None), True),
            # digitalSignature lets the user sign proxies (OpenSSL checks it on the proxy's issuer).
            (_key_usage(), True),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False),
        ]
        cred = self._issue(subject, (start, end), extensions, (target / "usercert.pem", target / "userkey.pem"))
        proxy_file = target / "proxy.pem"
        now = _now()
        if start <= now < end:
            self.issue_proxy(cred.cert_file, cred.key_file, proxy_file, hours=proxy_hours)
        else:
            self.issue_proxy(cred.cert_file, cred.key_file, proxy_file, not_before=start, not_after=end)
        return IssuedCredential(cred.cert_file, cred.key_file, proxy_file, cred.dn)

    def issue_host(
        self,
        hostname: str,
        *,
        sans: tuple[str, ...] | list[str] | None = None,
        days: int = 365,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
        directory: str | os.PathLike[str] | None = None,
    ) -> IssuedCredential:
        """Issue ``/DC=org/DC=rpcframework/OU=Hosts/CN=<hostname>`` for TLS servers (and clients).

        ``sans`` entries are ``DNS:name`` or ``IP:address`` (bare values are DNS names); by default the host name only
        (plus ``127.0.0.1`` and ``::1`` for a host named ``localhost``). Clients match the name they connect to
        against these, so a dev host given ``localhost`` could pose as every local service: give loopback names only
        to the host that really serves there (:meth:`init` does for the CA's own host).
        """
        subject = _name(*_BASE_NAME, ("OU", "Hosts"), ("CN", hostname))
        target = Path(directory) if directory is not None else self.directory / "hosts" / _safe(hostname)
        start, end = _validity(datetime.timedelta(days=days), not_before, not_after)
        loopback = _DEFAULT_HOST_SANS if hostname == "localhost" else ()
        wanted = list(sans) if sans is not None else list(dict.fromkeys([f"DNS:{hostname}", *loopback]))
        extensions: list[tuple[x509.ExtensionType, bool]] = [
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (_key_usage(), True),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), False),
            (x509.SubjectAlternativeName(_parse_sans(wanted)), False),
        ]
        return self._issue(subject, (start, end), extensions, (target / "hostcert.pem", target / "hostkey.pem"))

    def _issue(
        self,
        subject: x509.Name,
        validity: tuple[datetime.datetime, datetime.datetime],
        extensions: list[tuple[x509.ExtensionType, bool]],
        target: tuple[Path, Path],
    ) -> IssuedCredential:
        start, end = validity
        cert_file, key_file = target
        key = _generate_key(self.key_type, self.key_size)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(_authority_key_id(self.cert), critical=False)
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        cert = builder.sign(self._key, _signing_hash(self._key))
        _write(key_file, _key_pem(key), private=True)
        _write(cert_file, _cert_pem(cert))
        logger.info("issued %s (serial %x) to %s", format_dn(subject), cert.serial_number, cert_file)
        return IssuedCredential(cert_file, key_file, None, format_dn(subject))

    def issue_proxy(
        self,
        cert_file: str | os.PathLike[str],
        key_file: str | os.PathLike[str],
        out_file: str | os.PathLike[str],
        *,
        hours: float = 12,
        limited: bool = False,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
        group: str | None = None,
    ) -> IssuedCredential:
        """Sign an RFC 3820 proxy with the credential in ``cert_file``/``key_file`` and write the grid proxy file.

        ``group`` adds DIRAC's group extension (1.2.42.42, as ``dirac-proxy-init -g GROUP`` does): services then
        see the caller in that group instead of the registry's default one.

        The signer may itself be a proxy (pass a proxy file as both arguments): the result is user -> proxy -> proxy.
        ``out_file`` holds the new proxy, its unencrypted key, then every certificate of ``cert_file``. Unless
        ``not_after`` is given the proxy ends no later than its signer. The CA's key is not involved.
        """
        return issue_proxy(
            cert_file,
            key_file,
            out_file,
            hours=hours,
            limited=limited,
            not_before=not_before,
            not_after=not_after,
            key_type=self.key_type,
            key_size=self.key_size,
            group=group,
        )

    # ------------------------------------------------------------------------------------------------ revoking

    def revoke(self, cert_file: str | os.PathLike[str]) -> int:
        """Add the CA-issued certificate in ``cert_file`` to the CRL (rewrites ``<hash>.r0``); returns its serial.

        In a proxy file the certificate issued by this CA (the user's) is the one revoked.
        """
        chain = load_pem_chain_file(cert_file)
        ours = [cert for cert in chain if cert != self.cert and self._signed(cert)]
        if not ours:
            raise CredentialsError(f"{cert_file} holds no certificate issued by {self.dn}; nothing to revoke")
        serial = ours[0].serial_number
        revoked = self._revoked_serials()
        if serial not in revoked:
            revoked.append(serial)
            self._write_crl(revoked)
        logger.info("revoked serial %x (%s)", serial, format_dn(ours[0].subject))
        return serial

    def _signed(self, cert: x509.Certificate) -> bool:
        # By signature, not just issuer name: every dev CA has the same subject.
        try:
            cert.verify_directly_issued_by(self.cert)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True

    def revoked_serials(self) -> list[int]:
        """Serial numbers currently on this CA's CRL."""
        return self._revoked_serials()

    def _current_crl(self) -> x509.CertificateRevocationList | None:
        try:
            return x509.load_pem_x509_crl(self.crl_file.read_bytes())
        except FileNotFoundError:
            return None

    def _revoked_serials(self) -> list[int]:
        crl = self._current_crl()
        return [entry.serial_number for entry in crl] if crl is not None else []

    def _write_crl(self, serials: list[int], *, days: int = 365) -> None:
        # nextUpdate a year ahead: OpenSSL refuses a CRL past nextUpdate, which would break every chain check.
        previous = self._current_crl()
        number = 1
        if previous is not None:
            try:
                number = previous.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number + 1
            except x509.ExtensionNotFound:
                number = len(serials) + 1
        now = _now() - _CLOCK_SKEW
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(now)
            .next_update(now + datetime.timedelta(days=days))
            .add_extension(x509.CRLNumber(number), critical=False)
            .add_extension(_authority_key_id(self.cert), critical=False)
        )
        for serial in serials:
            entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
            builder = builder.add_revoked_certificate(entry)
        crl = builder.sign(self._key, _signing_hash(self._key))
        _write(self.crl_file, crl.public_bytes(serialization.Encoding.PEM))


def issue_proxy(
    cert_file: str | os.PathLike[str],
    key_file: str | os.PathLike[str],
    out_file: str | os.PathLike[str],
    *,
    hours: float = 12,
    limited: bool = False,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
    key_type: KeyType = "rsa",
    key_size: int = 2048,
    group: str | None = None,
) -> IssuedCredential:
    """Module-level form of :meth:`DevCA.issue_proxy`: proxies need only the signer's credential, not the CA."""
    chain = load_pem_chain_file(cert_file)
    signer = chain[0]
    try:
        signer_key = load_pem_private_key(Path(key_file).read_bytes())
    except OSError as exc:
        raise CredentialsError(f"cannot read key file {key_file}: {exc.strerror or exc}") from exc
    except CredentialsError as exc:
        raise CredentialsError(f"{key_file}: {exc}") from exc
    if not isinstance(signer_key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise CredentialsError(f"{key_file}: unsupported key type {type(signer_key).__name__}")
    default = datetime.timedelta(hours=hours)
    start, end = _validity(default, not_before, not_after)
    if not_after is None and start < signer.not_valid_after_utc < end:
        end = signer.not_valid_after_utc  # a proxy cannot outlive its signer
    key = _generate_key(key_type, key_size)
    serial = secrets.randbits(62) + 1  # RFC 3820: the new CN is the serial number, unique per issuer
    subject = x509.Name([*signer.subject.rdns, x509.RelativeDistinguishedName([_cn(str(serial))])])
    try:
        extra = [dirac_group_extension(group)] if group is not None else []
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(signer.subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.UnrecognizedExtension(PROXY_CERT_INFO_OID, proxy_cert_info_der(limited=limited)), critical=True
        )
        .add_extension(
            x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True
        )  # digitalSignature + keyEncipherment
    )
    for extension in extra:
        builder = builder.add_extension(extension, critical=False)  # non-critical, as DIRAC writes it
    cert = builder.sign(signer_key, hashes.SHA256())
    out = Path(out_file)
    _write(out, _cert_pem(cert) + _key_pem(key) + b"".join(_cert_pem(c) for c in chain), private=True)
    logger.info(
        "wrote %sproxy %s%s to %s",
        "limited " if limited else "",
        format_dn(subject),
        f" ({group})" if group else "",
        out,
    )
    return IssuedCredential(out, out, out, identity_from_chain([cert, *chain]).dn)


def _cn(value: str) -> x509.NameAttribute[str]:
    return x509.NameAttribute(NameOID.COMMON_NAME, value)


def _key_usage(*, cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=not cert_sign,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _authority_key_id(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _parse_sans(entries: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for entry in entries:
        kind, sep, value = entry.partition(":")
        if sep and kind.upper() == "IP":
            names.append(x509.IPAddress(ipaddress.ip_address(value)))
        elif sep and kind.upper() == "DNS":
            names.append(x509.DNSName(value))
        else:
            names.append(x509.DNSName(entry))
    return names


def _safe(name: str) -> str:
    """A directory name for a user or host (DNs may contain characters paths should not)."""
    cleaned = "".join(ch if ch.isalnum() or ch in "-_.@" else "_" for ch in name)
    if not cleaned or cleaned.startswith("."):
        cleaned = "_" + cleaned
    return cleaned
