"""Fixtures for the security unit tests: a CA of a test's own and a small certificate factory.

Tests that only read a CA use the plugin's session CA, ``rpcframework_dev_ca`` (RSA-2048, as ``DevCA.init`` makes it
by default); tests that change CA state (revocations) use ``fresh_ca``.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from support.certs import certificate_builder

from rpcframework.security.devca import DevCA

CertFactory = Callable[..., x509.Certificate]


@pytest.fixture
def fresh_ca(tmp_path: Path) -> DevCA:
    """A CA of its own, with EC keys for speed (for tests that change CA state)."""
    return DevCA.init(tmp_path / "ca", key_type="ec")


@pytest.fixture(scope="session")
def make_cert() -> CertFactory:
    """Build a certificate with the given subject (and issuer, default self-issued) and extensions."""
    key = ec.generate_private_key(ec.SECP256R1())

    def factory(
        subject: x509.Name,
        issuer: x509.Name | None = None,
        *,
        extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
        not_after: datetime.datetime | None = None,
    ) -> x509.Certificate:
        builder = certificate_builder(
            subject,
            issuer if issuer is not None else subject,
            key.public_key(),
            backdated=datetime.timedelta(minutes=1),
            not_after=not_after,
        )
        for ext, critical in extensions:
            builder = builder.add_extension(ext, critical=critical)
        return builder.sign(key, hashes.SHA256())

    return factory
