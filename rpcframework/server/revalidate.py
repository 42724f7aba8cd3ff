"""Connections kept alive across a credential reload: their peers are checked again, as bans already are.

The TLS handshake checks a client's chain once (CA, lifetimes, CRLs). A reused connection outlives that check:
without more, a user revoked by a CRL update, or whose proxy expired, would be served on a connection opened before,
until it idles out. So:

* a :class:`CredentialWatch` per TLS listener looks at the server's credential and CA files every
  ``CredentialsCheckInterval`` seconds (the same fingerprint as the TLS context cache) and, when they changed,
  reads the CA directory's CRLs again (:class:`~rpcframework.security.revocation.RevocationList`) into a new
  immutable :class:`CredentialState`;
* each connection's :class:`PeerCheck` answers "may this peer still be served?" in the steady state with one clock
  read and one identity comparison: the chain's earliest expiry has not passed and the state it was checked against
  is still current. When a new state appears the verified chain is checked against its CRLs once;
* the reactor closes idle connections whose peer fails the check at each credential check, and a connection owned by
  a worker is refused (``Errno 1111``, saying why) and closed at its next proposal.
"""

from __future__ import annotations

import datetime
import logging
import selectors
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, Protocol

from rpcframework.security.revocation import CheckMode, RevocationList
from rpcframework.security.x509 import PeerIdentity
from rpcframework.transports.base import TLSConfig, resolve_crl_mode
from rpcframework.transports.contexts import Fingerprint, fingerprint

__all__ = ["CredentialState", "CredentialWatch", "PeerCheck", "close_unservable_idle"]

logger = logging.getLogger(__name__)

#: A state that revokes nothing (before the first reading, and for plain TCP).
_NOTHING_REVOKED: Final = RevocationList()


@dataclass(frozen=True, eq=False)
class CredentialState:
    """The CRLs in force and how they apply (``crl_mode`` of the server's TLS settings)."""

    revocations: RevocationList
    mode: CheckMode

    def problem(self, identity: PeerIdentity) -> str | None:
        """Why ``identity``'s verified chain is revoked under this state, or ``None``."""
        cert = self.revocations.revoked_certificate(identity.chain, self.mode)
        if cert is None:
            return None
        return (
            f"the certificate {self.revocations.describe(cert)} in the chain of {identity.dn} has been revoked by its "
            "CA since this connection was opened; the connection is closed (ask your CA for a new certificate)"
        )


class CredentialWatch:
    """Re-reads the CRLs of one TLS listener's CA directory when its files change. ``refresh`` is called from
    the reactor's selector thread only; :attr:`state` is read by any thread (one attribute read, swapped whole)."""

    def __init__(self, tls: TLSConfig, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.tls = tls
        self.interval = interval
        self._clock = clock
        self._fingerprint: Fingerprint | None = None
        self._next_check = 0.0
        self.state = CredentialState(_NOTHING_REVOKED, "off")
        self.refresh(force=True)

    def refresh(self, *, force: bool = False) -> bool:
        """Check the files when the interval has passed (a new :attr:`state` when they changed); ``True`` when the
        interval had passed, so that idle connections are checked then (expiry too)."""
        now = self._clock()
        if not force and now < self._next_check:
            return False
        self._next_check = now + self.interval
        current = fingerprint(self.tls)
        if current == self._fingerprint:
            return True
        first = self._fingerprint is None
        self._fingerprint = current
        mode = resolve_crl_mode(self.tls)
        revocations = RevocationList.from_ca_dir(self.tls.ca_dir) if mode != "off" else _NOTHING_REVOKED
        self.state = CredentialState(revocations, mode)
        if not first:
            logger.info("credential or CA files changed: open connections are checked against the new CRLs")
        return True

    def peer_check(self, identity: PeerIdentity | None) -> PeerCheck | None:
        """The check for one connection's peer (``None`` without a verified identity: nothing to re-check)."""
        return None if identity is None else PeerCheck(identity, self)


class PeerCheck:
    """One connection's peer, checked again whenever the credential state changes or its chain expires."""

    __slots__ = ("_checked", "_identity", "_problem", "_valid_until", "_watch")

    def __init__(self, identity: PeerIdentity, watch: CredentialWatch) -> None:
        self._identity = identity
        self._watch = watch
        # The chain's earliest expiry on the monotonic clock, so the per-call test is a float comparison.
        self._valid_until = time.monotonic() + identity.seconds_left()
        # Checked at the first use too: the handshake's TLS context may predate the watch's latest CRLs.
        self._checked: CredentialState | None = None
        self._problem: str | None = None

    def problem(self) -> str | None:
        """Why this peer may no longer be served, or ``None`` (sticky once found)."""
        if self._problem is not None:
            return self._problem
        if time.monotonic() >= self._valid_until:
            expiry = self._identity.not_after.astimezone(datetime.UTC).isoformat(timespec="seconds")
            self._problem = (
                f"the credentials of {self._identity.dn} expired at {expiry}; the connection is closed "
                "(renew your proxy or certificate and connect again)"
            )
            return self._problem
        state = self._watch.state
        if state is not self._checked:
            self._checked = state
            self._problem = state.problem(self._identity)
        return self._problem


class _Checked(Protocol):
    """What the reactor's selector holds for a connection (a ``Channel``)."""

    peer_check: PeerCheck | None

    @property
    def where(self) -> str: ...

    def close(self) -> None: ...


def close_unservable_idle(selector: selectors.BaseSelector, watches: Iterable[CredentialWatch]) -> int:
    """Once per credential check interval: refresh ``watches`` and close the idle connections (those the selector
    holds) whose peer was revoked or expired since they were opened. Returns how many were closed."""
    if not any([watch.refresh() for watch in watches]):  # a list: every watch refreshes
        return 0
    closing: list[tuple[int, _Checked, str]] = []
    for key in list(selector.get_map().values()):
        check: PeerCheck | None = getattr(key.data, "peer_check", None)
        problem = check.problem() if check is not None else None
        if problem is not None:
            closing.append((key.fd, key.data, problem))
    for fd, channel, problem in closing:
        selector.unregister(fd)
        logger.info("closing %s: %s", channel.where, problem)
        channel.close()
    return len(closing)
