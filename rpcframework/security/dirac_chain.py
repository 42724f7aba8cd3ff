"""DIRAC's ``X509Chain`` / ``X509Certificate`` reading API over a chain the TLS handshake already verified.

A handler ported from DIRAC reads ``credDict["x509Chain"]`` as an object (``getCertInChain(0)["Value"]
.getSubjectDN()``...). :class:`X509Chain` gives it that API, read-only, every method answering ``S_OK``/``S_ERROR``
as DIRAC's does. It wraps the ``cryptography`` certificates of the :class:`~rpcframework.security.x509.PeerIdentity`
(no second parse), and computes each answer only when asked. New code can use :attr:`X509Chain.certificates` (the
certificates, leaf first) or the peer identity itself.

What is not here on purpose: anything that needs the private key (DIRAC's chain may hold one; a peer's never does),
generating or delegating proxies, and VOMS (``isVOMS`` answers False, ``getVOMSData`` an error).
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from rpcframework.returnvalues import S_ERROR, S_OK, DReturn
from rpcframework.security.x509 import dirac_group, format_dn, proxy_info

if TYPE_CHECKING:
    from rpcframework.security.x509 import PeerIdentity

__all__ = ["X509Certificate", "X509Chain"]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class X509Certificate:
    """One certificate of a verified chain, with DIRAC's ``X509Certificate`` reading methods."""

    __slots__ = ("_cert", "_default_group")

    def __init__(self, cert: x509.Certificate, default_group: str | None = None) -> None:
        self._cert = cert
        self._default_group = default_group

    @property
    def certificate(self) -> x509.Certificate:
        """The ``cryptography`` certificate (for new code)."""
        return self._cert

    def getSubjectDN(self) -> DReturn:
        return S_OK(format_dn(self._cert.subject))

    def getIssuerDN(self) -> DReturn:
        return S_OK(format_dn(self._cert.issuer))

    def getNotAfterDate(self) -> DReturn:
        return S_OK(self._cert.not_valid_after_utc)

    def getNotBeforeDate(self) -> DReturn:
        return S_OK(self._cert.not_valid_before_utc)

    def getSerialNumber(self) -> DReturn:
        return S_OK(self._cert.serial_number)

    def hasExpired(self) -> DReturn:
        return S_OK(self._cert.not_valid_after_utc <= _now())

    def getRemainingSecs(self) -> DReturn:
        return S_OK(max(int((self._cert.not_valid_after_utc - _now()).total_seconds()), 0))

    def getDIRACGroup(self, ignoreDefault: bool = False) -> DReturn:
        """The group the certificate names; else (unless ``ignoreDefault``) the caller's registry group, else False."""
        try:
            group = dirac_group(self._cert)
        except ValueError as exc:
            return S_ERROR(str(exc))
        if group is not None:
            return S_OK(group)
        return S_OK(False if ignoreDefault or self._default_group is None else self._default_group)

    def asPem(self) -> DReturn:
        return S_OK(self._cert.public_bytes(serialization.Encoding.PEM).decode("ascii"))

    def __repr__(self) -> str:
        return f"<X509Certificate {format_dn(self._cert.subject)}>"


class X509Chain:
    """A peer's verified chain (leaf first) with DIRAC's ``X509Chain`` reading methods; read-only."""

    __slots__ = ("_certs", "_default_group", "_first_non_proxy", "_limited")

    def __init__(self, certificates: Sequence[x509.Certificate], default_group: str | None = None) -> None:
        """``default_group`` is the group the service resolved and checked for the caller (None for an anonymous
        caller): ``getDIRACGroup`` answers it when no proxy names a group, and refuses a named group that differs."""
        self._certs = tuple(certificates)
        self._default_group = default_group
        self._first_non_proxy: int | None = None
        self._limited = False

    @classmethod
    def from_identity(cls, identity: PeerIdentity, default_group: str | None = None) -> X509Chain:
        """The chain of a verified peer; ``default_group`` answers ``getDIRACGroup`` when no proxy names one."""
        return cls(identity.chain, default_group)

    @property
    def certificates(self) -> tuple[x509.Certificate, ...]:
        """The ``cryptography`` certificates, leaf first (for new code)."""
        return self._certs

    # -- the shape of the chain ---------------------------------------------------------------------------------

    def _proxy_steps(self) -> int:
        """How many leading certificates are proxies (computed once, on first use)."""
        if self._first_non_proxy is None:
            steps = 0
            limited = False
            for cert in self._certs:
                info = proxy_info(cert)
                if info is None:
                    break
                limited = limited or info.limited
                steps += 1
            self._first_non_proxy, self._limited = steps, limited
        return self._first_non_proxy

    def getNumCertsInChain(self) -> DReturn:
        return S_OK(len(self._certs))

    def _certificate(self, position: int) -> X509Certificate:
        # Only the caller's own certificates (its proxies and its end-entity certificate) fall back to its group;
        # a CA certificate further up has no group of the caller's.
        own = position <= self._proxy_steps()
        return X509Certificate(self._certs[position], self._default_group if own else None)

    def getCertInChain(self, certPos: int = 0) -> DReturn:
        if not -len(self._certs) <= certPos < len(self._certs):
            return S_ERROR(f"no certificate at position {certPos}: the chain holds {len(self._certs)}")
        return S_OK(self._certificate(certPos % len(self._certs)))

    def getCertList(self) -> DReturn:
        return S_OK([self._certificate(position) for position in range(len(self._certs))])

    def getIssuerCert(self) -> DReturn:
        """The end-entity certificate the proxies lead to (the leaf itself when it is not a proxy), as DIRAC."""
        if not self._certs:
            return S_ERROR("the chain is empty")
        steps = self._proxy_steps()
        return self.getCertInChain(steps if steps < len(self._certs) else 0)

    def isProxy(self) -> DReturn:
        return S_OK(self._proxy_steps() > 0)

    def isLimitedProxy(self) -> DReturn:
        return S_OK(self._proxy_steps() > 0 and self._limited)

    def isValidProxy(self, ignoreDefault: bool = False) -> DReturn:
        if self._proxy_steps() == 0:
            return S_ERROR("the chain is not a proxy chain")
        if self._seconds_left() <= 0:
            return S_ERROR("the proxy has expired")
        if not ignoreDefault and not self.getDIRACGroup()["OK"]:
            return S_ERROR("the proxy has a malformed DIRAC group")
        return S_OK(True)

    def isRFC(self) -> DReturn:
        return S_OK(any((info := proxy_info(c)) is not None and info.rfc3820 for c in self._certs))

    def isVOMS(self) -> DReturn:
        return S_OK(False)

    def getVOMSData(self) -> DReturn:
        return S_ERROR("VOMS attributes are not read by this server")

    def isPUSP(self) -> DReturn:
        return S_OK(False)

    # -- identity and lifetime ----------------------------------------------------------------------------------

    def getDIRACGroup(self, ignoreDefault: bool = False) -> DReturn:
        """DIRAC's rule: searching from the end-entity certificate outwards, the first proxy naming a group wins;
        else (unless ``ignoreDefault``) the caller's registry group, else False."""
        if self._proxy_steps() == 0:
            return S_ERROR("the chain is not a proxy chain: only proxies carry a DIRAC group")
        for cert in reversed(self._certs[: self._proxy_steps()]):
            found = X509Certificate(cert).getDIRACGroup(ignoreDefault=True)
            if not found["OK"]:
                return found
            if found["Value"]:
                return self._accepted(str(found["Value"]))
        return S_OK(False if ignoreDefault or self._default_group is None else self._default_group)

    def _accepted(self, named: str) -> DReturn:
        """The group a proxy names, only if it is the group the service accepted for this caller: a host's proxy or
        an unregistered certificate can name any group, and no registry check stands behind that."""
        if named == self._default_group:
            return S_OK(named)
        seen = f"the caller's group is {self._default_group}" if self._default_group else "the caller has no group"
        return S_ERROR(f"the proxy names group {named}, which this service did not accept for the caller ({seen})")

    def _seconds_left(self) -> int:
        if not self._certs:
            return 0
        not_after = min(cert.not_valid_after_utc for cert in self._certs)
        return max(int((not_after - _now()).total_seconds()), 0)

    def getNotAfterDate(self) -> DReturn:
        """The earliest expiry in the chain."""
        if not self._certs:
            return S_ERROR("the chain is empty")
        return S_OK(min(cert.not_valid_after_utc for cert in self._certs))

    def hasExpired(self) -> DReturn:
        return S_OK(self._seconds_left() <= 0)

    def getRemainingSecs(self) -> DReturn:
        return S_OK(self._seconds_left())

    def dumpAllToString(self) -> DReturn:
        """The certificates as PEM, leaf first (a peer's chain has no private key to dump)."""
        return S_OK("".join(cert.public_bytes(serialization.Encoding.PEM).decode("ascii") for cert in self._certs))

    def __len__(self) -> int:
        return len(self._certs)

    def __repr__(self) -> str:
        leaf = format_dn(self._certs[0].subject) if self._certs else "empty"
        return f"<X509Chain {len(self._certs)} certificates, leaf {leaf}>"
