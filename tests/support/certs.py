"""X.509 certificates built by hand, for the tests that need one the dev CA would never issue (forged chains,
impostor servers, odd names): the builder with the usual fields filled in."""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID


def certificate_builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: CertificatePublicKeyTypes,
    *,
    valid_for: datetime.timedelta = datetime.timedelta(days=1),
    backdated: datetime.timedelta = datetime.timedelta(minutes=5),
    not_after: datetime.datetime | None = None,
    serial: int | None = None,
) -> x509.CertificateBuilder:
    """Subject, issuer, key, serial (random unless given) and validity: from ``backdated`` ago (clock skew) until
    ``not_after`` or ``valid_for`` from now. Add extensions and sign."""
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(now - backdated)
        .not_valid_after(not_after or now + valid_for)
    )


def cn(value: str) -> x509.NameAttribute[str]:
    """A common name, for the names of hand-made certificates."""
    return x509.NameAttribute(NameOID.COMMON_NAME, value)


def rdn(*attrs: x509.NameAttribute[str]) -> x509.RelativeDistinguishedName:
    """One relative distinguished name of the given attributes (several make a multi-valued RDN)."""
    return x509.RelativeDistinguishedName(attrs)
