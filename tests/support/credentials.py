"""TLS settings and configuration from a dev CA, for the test folders that start real servers and clients.

The CA itself is the plugin's session fixture ``rpcframework_dev_ca`` (RSA keys are slow to make: one CA per
session). Folders that need more credentials subclass :class:`DevCreds` and issue them in their own directories, so
that no folder overwrites another's files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from rpcframework.security.devca import DevCA, IssuedCredential
from rpcframework.transports import TLSConfig


@dataclass(frozen=True)
class DevCreds:
    ca: DevCA
    host: IssuedCredential  # localhost (and 127.0.0.1, ::1): the servers' certificate
    user: IssuedCredential  # dev-user, with its proxy

    @classmethod
    def of(cls, ca: DevCA, **extra: Any) -> Self:
        return cls(ca=ca, host=ca.default_host(), user=ca.default_user(), **extra)

    def server_tls(self, host: IssuedCredential | None = None, **options: Any) -> TLSConfig:
        cred = host or self.host
        return TLSConfig(
            cert_file=str(cred.cert_file), key_file=str(cred.key_file), ca_dir=str(self.ca.cert_dir), **options
        )

    def client_tls(self, cert: Path | None = None, key: Path | None = None, **options: Any) -> TLSConfig:
        """The dev user's proxy (or ``cert``/``key``), trusting the dev CA."""
        chosen = cert if cert is not None else self.user.proxy_file
        return TLSConfig(
            cert_file=str(chosen) if chosen else None,
            key_file=str(key) if key else None,
            ca_dir=str(self.ca.cert_dir),
            **options,
        )

    def security_section(self) -> dict[str, str]:
        """``DIRAC/Security``: the CA directory and the host certificate (servers, and clients with useCertificates)."""
        return {
            "CALocation": str(self.ca.cert_dir),
            "CertFile": str(self.host.cert_file),
            "KeyFile": str(self.host.key_file),
        }
