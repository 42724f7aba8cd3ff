"""Revocation of already verified chains: the CRLs of a hashed CA directory, read with ``cryptography``.

OpenSSL checks CRLs during each handshake, so a new connection of a revoked user is refused as soon as the server's
TLS context is rebuilt with the new CRL. A connection kept alive from before the update was verified against the
old CRL; :class:`RevocationList` lets the server check such a connection's verified chain again, with the same rules
as the handshake's ``crl_mode`` (``"leaf"``: the presented certificate only, ``"chain"``: every certificate).

A CRL counts only when its signature verifies with a CA certificate of the same directory whose subject is the
CRL's issuer (``<hash>.<n>`` next to ``<hash>.r<n>``); an unreadable or unverifiable CRL is skipped with a warning,
as the handshake's check would not use it either. Whether a CRL is past its ``nextUpdate`` is the handshake's
business (it refuses new connections then); connections already open are not closed for a stale CRL.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes

from rpcframework.security.x509 import format_dn, load_pem_chain

__all__ = ["RevocationList"]

logger = logging.getLogger(__name__)

_CRL_FILE: Final = re.compile(r"^([0-9a-f]{8})\.r[0-9]+$")
_CA_FILE: Final = re.compile(r"^([0-9a-f]{8})\.[0-9]+$")
#: Bound on the files one directory scan reads (a CA directory of a grid site holds a few hundred).
_MAX_FILES: Final = 10_000
#: Bound on one CRL or CA file (the largest real CRLs are a few MiB).
_MAX_FILE_SIZE: Final = 64 * 1024 * 1024

CheckMode = Literal["off", "leaf", "chain"]


@dataclass(frozen=True)
class RevocationList:
    """Revoked serial numbers by issuer, from the verified CRLs of one CA directory."""

    revoked: Mapping[x509.Name, frozenset[int]] = field(default_factory=dict)
    #: Every revoked serial number, whatever its issuer: a chain none of whose serials is here is not revoked, and
    #: finding that costs no ``Name`` built, hashed or compared (a new connection's check, each time).
    serials: frozenset[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "serials", frozenset().union(*self.revoked.values()))

    @classmethod
    def from_ca_dir(cls, ca_dir: str | os.PathLike[str] | None) -> RevocationList:
        """Read every ``<hash>.r<n>`` of ``ca_dir`` whose signature verifies with a CA of the same directory."""
        if ca_dir is None:
            return cls()
        try:
            names = sorted(os.listdir(ca_dir))[:_MAX_FILES]
        except OSError as exc:
            logger.warning("cannot list the CA directory %s to check revocations: %s", ca_dir, exc)
            return cls()
        issuers = _ca_certificates(ca_dir, names)
        revoked: dict[x509.Name, set[int]] = {}
        for name in names:
            match = _CRL_FILE.match(name)
            if match is None:
                continue
            crl = _load_crl(os.path.join(ca_dir, name))
            if crl is None:
                continue
            if not _signed_by_one_of(crl, issuers.get(match.group(1), ())):
                logger.warning("%s: the CRL's signature does not verify with a CA of %s; ignored", name, ca_dir)
                continue
            revoked.setdefault(crl.issuer, set()).update(entry.serial_number for entry in crl)
        return cls({issuer: frozenset(serials) for issuer, serials in revoked.items()})

    def revoked_certificate(self, chain: Sequence[x509.Certificate], mode: CheckMode) -> x509.Certificate | None:
        """The first certificate of ``chain`` (leaf first) that a CRL revokes, under ``mode``; ``None`` if none."""
        any_issuer = self.serials
        if mode == "off" or not any_issuer:
            return None
        checked = chain[:1] if mode == "leaf" else chain
        for cert in checked:
            if cert.serial_number not in any_issuer:  # an int; the issuer's Name is built only for a candidate
                continue
            serials = self.revoked.get(cert.issuer)
            if serials is not None and cert.serial_number in serials:
                return cert
        return None

    def describe(self, cert: x509.Certificate) -> str:
        """``cert`` for a message: its subject and serial number."""
        return f"{format_dn(cert.subject)} (serial {cert.serial_number:x})"


def _ca_certificates(ca_dir: str | os.PathLike[str], names: Iterable[str]) -> dict[str, list[x509.Certificate]]:
    """CA certificates of the directory by their hash prefix."""
    found: dict[str, list[x509.Certificate]] = {}
    for name in names:
        match = _CA_FILE.match(name)
        if match is None:
            continue
        data = _read(os.path.join(ca_dir, name))
        if data is None:
            continue
        try:
            certs = load_pem_chain(data)
        except Exception:  # a file we cannot use is one the handshake cannot use either
            continue
        found.setdefault(match.group(1), []).extend(certs)
    return found


def _load_crl(path: str) -> x509.CertificateRevocationList | None:
    data = _read(path)
    if data is None:
        return None
    try:
        if b"-----BEGIN X509 CRL-----" in data:
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError as exc:
        logger.warning("%s is not a readable CRL (%s); ignored", path, exc)
        return None


def _read(path: str) -> bytes | None:
    try:
        if os.path.getsize(path) > _MAX_FILE_SIZE:
            logger.warning("%s is over %d bytes; ignored", path, _MAX_FILE_SIZE)
            return None
        with open(path, "rb") as handle:
            return handle.read(_MAX_FILE_SIZE + 1)
    except OSError as exc:
        logger.warning("cannot read %s: %s", path, exc)
        return None


def _signed_by_one_of(crl: x509.CertificateRevocationList, cas: Iterable[x509.Certificate]) -> bool:
    for ca in cas:
        if ca.subject != crl.issuer:
            continue
        key = ca.public_key()
        try:
            if crl.is_signature_valid(_issuer_key(key)):
                return True
        except (TypeError, ValueError):
            continue
    return False


def _issuer_key(key: object) -> CertificateIssuerPublicKeyTypes:
    return key  # type: ignore[return-value]  # is_signature_valid raises TypeError for a key type it cannot use
