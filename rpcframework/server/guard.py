"""The connection guard: who may open a connection, how many at once, and who is refused for a while.

Abuse is charged to whoever did it (``docs/security.md``, "Who pays for abuse"). Portals and grid sites put many
callers behind one address, so an address pays only for what never authenticated:

* a refusal of an authenticated caller (authorization refused, a protocol error after the handshake) is a strike
  against its *identity*: the DN it authenticated with, or the user a ``TrustedHost`` acts for
  (:func:`charged_identity`). ``AutoBan/MaxFailures`` strikes within ``AutoBan/Window`` seconds suspend that
  identity for ``AutoBan/Duration`` seconds: its proposals are refused with a message saying so, from any address,
  and every other caller behind the same address or portal is served as before;
* traffic that never authenticates is charged to the address. What no client sends by mistake (bytes that are not
  TLS, handshakes left hanging until ``HandshakeTimeout``, the protocol errors of a peer without a certificate)
  bans the address after the same number of strikes. A handshake refused for its certificate (expired, revoked,
  unknown CA) or abandoned by a client that refused ours is what a crowd of grid jobs behind one NAT produces when
  their proxies expire together: it is *rate limited* instead (``HandshakeFailures/Burst`` such failures at once,
  then ``HandshakeFailures/Rate`` per second), never banned;
* ``AutoBan/Exempt`` exempts addresses from both address measures; loopback is not special.

The reactor asks :meth:`ConnectionGuard.admit` for every accepted socket *before* any TLS work, so a refused peer
costs one ``accept`` and one ``close``. A peer is refused (closed silently) when its address matches
``/Registry/BannedIPs`` (read from the current configuration snapshot, so edits apply without a restart), is under
a temporary ban or out of handshake-failure tokens, or when the server already holds ``MaxConnections``
connections, or ``MaxConnectionsPerAddress`` from that address.

An admitted connection carries a :class:`Ticket` until it closes; the ticket gives the slot back and charges
failures. Settings live in ``/DIRAC/Security/Server`` (:func:`guard_settings`) and are read once per snapshot.
Memory is bounded whatever peers do (:mod:`rpcframework.server.strikes`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

from rpcframework.config.tree import ConfigTree
from rpcframework.errors import (
    ConfigurationError,
    ConnectionClosedError,
    CredentialsError,
    DeadlineExceeded,
    PeerVerificationError,
)
from rpcframework.protocol.messages import DelegatedIdentity, ExtraCredentials, Proposal
from rpcframework.returnvalues import ENOAUTH, S_ERROR, DErrorReturn
from rpcframework.security.authz import Property
from rpcframework.security.registry import Registry
from rpcframework.server.limits import BytesInFlight, Holding
from rpcframework.server.strikes import MAX_TRACKED, StrikePolicy, StrikeTable, TokenBuckets

if TYPE_CHECKING:
    from rpcframework.server.connection import Channel, ChannelLimits
    from rpcframework.server.service import Service

__all__ = [
    "GUARD_SECTION",
    "ConnectionGuard",
    "GuardSettings",
    "Ticket",
    "charged_identity",
    "guard_settings",
    "proposal_identity",
    "read_guard_settings",
]

logger = logging.getLogger(__name__)

GUARD_SECTION: Final = "/DIRAC/Security/Server"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class GuardSettings:
    """Limits on what a peer controls. ``None`` timeouts and sizes mean "the reactor's own argument"."""

    max_connections: int = 4096
    max_connections_per_address: int = 256
    max_calls_per_connection: int = 100_000
    handshake_timeout: float | None = None
    read_timeout: float | None = None
    idle_timeout: float | None = None
    transfer_idle_timeout: float | None = None
    max_message_size: int | None = None
    refuse_limited_proxies: bool = False
    autoban: bool = True
    autoban_max_failures: int = 50
    autoban_window: float = 60.0
    autoban_duration: float = 300.0
    autoban_exempt: tuple[IPNetwork, ...] = ()
    handshake_failure_rate: float = 5.0
    handshake_failure_burst: int = 100
    max_bytes_in_flight_per_address: int = 16 * 1024 * 1024
    max_bytes_in_flight_per_service: int = 64 * 1024 * 1024
    credentials_check_interval: float = 60.0

    def channel_limits(self, base: ChannelLimits) -> ChannelLimits:
        """``base`` (the reactor's arguments) with what the configuration sets instead."""
        return dataclasses.replace(
            base,
            read_timeout=self.read_timeout or base.read_timeout,
            idle_timeout=self.idle_timeout or base.idle_timeout,
            transfer_idle_timeout=self.transfer_idle_timeout or base.transfer_idle_timeout,
            max_message_size=self.max_message_size or base.max_message_size,
            max_calls=self.max_calls_per_connection,
        )

    def is_exempt(self, address: str) -> bool:
        ip = _ip(address)
        return ip is not None and any(ip.version == net.version and ip in net for net in self.autoban_exempt)

    @property
    def strike_policy(self) -> StrikePolicy:
        return StrikePolicy(self.autoban_max_failures, self.autoban_window, self.autoban_duration)


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


_Number = TypeVar("_Number", int, float)
_Default = TypeVar("_Default", int, float, None)


def _positive_number(
    tree: ConfigTree, key: str, default: _Default, kind: Callable[[str], _Number]
) -> _Number | _Default:
    """``kind(value)`` when set and positive, else ``default``; a bad value is logged, never fatal (a typo in a
    live configuration must not stop a running server)."""
    text = tree.get_str(f"{GUARD_SECTION}/{key}")
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or value <= 0:
        logger.warning("%s/%s = %r is not a positive number; using %s", GUARD_SECTION, key, text, default)
        return default
    return value


def _flag(tree: ConfigTree, key: str, default: bool) -> bool:
    try:
        return tree.get_bool(f"{GUARD_SECTION}/{key}", default)
    except ConfigurationError as exc:
        logger.warning("%s; using %s", exc, "yes" if default else "no")
        return default


def _networks(tree: ConfigTree, key: str) -> tuple[IPNetwork, ...]:
    networks = []
    for item in tree.get_list(f"{GUARD_SECTION}/{key}"):
        try:
            networks.append(ipaddress.ip_network(item.split("%", 1)[0], strict=False))
        except ValueError:
            logger.warning("%s/%s: %r is not an IP address or CIDR range; ignored", GUARD_SECTION, key, item)
    return tuple(networks)


def read_guard_settings(tree: ConfigTree) -> GuardSettings:
    """The guard settings in ``tree`` (see ``docs/configuration.md``, section "Server limits and bans")."""
    base = GuardSettings()
    return GuardSettings(
        max_connections=_positive_number(tree, "MaxConnections", base.max_connections, int),
        max_connections_per_address=_positive_number(
            tree, "MaxConnectionsPerAddress", base.max_connections_per_address, int
        ),
        max_calls_per_connection=_positive_number(tree, "MaxCallsPerConnection", base.max_calls_per_connection, int),
        handshake_timeout=_positive_number(tree, "HandshakeTimeout", None, float),
        read_timeout=_positive_number(tree, "ReadTimeout", None, float),
        idle_timeout=_positive_number(tree, "IdleTimeout", None, float),
        transfer_idle_timeout=_positive_number(tree, "TransferIdleTimeout", None, float),
        max_message_size=_positive_number(tree, "MaxMessageSize", None, int),
        refuse_limited_proxies=_flag(tree, "RefuseLimitedProxies", base.refuse_limited_proxies),
        autoban=_flag(tree, "AutoBan/Enabled", base.autoban),
        autoban_max_failures=_positive_number(tree, "AutoBan/MaxFailures", base.autoban_max_failures, int),
        autoban_window=_positive_number(tree, "AutoBan/Window", base.autoban_window, float),
        autoban_duration=_positive_number(tree, "AutoBan/Duration", base.autoban_duration, float),
        autoban_exempt=_networks(tree, "AutoBan/Exempt"),
        handshake_failure_rate=_positive_number(tree, "HandshakeFailures/Rate", base.handshake_failure_rate, float),
        handshake_failure_burst=_positive_number(tree, "HandshakeFailures/Burst", base.handshake_failure_burst, int),
        max_bytes_in_flight_per_address=_positive_number(
            tree, "MaxBytesInFlightPerAddress", base.max_bytes_in_flight_per_address, int
        ),
        max_bytes_in_flight_per_service=_positive_number(
            tree, "MaxBytesInFlightPerService", base.max_bytes_in_flight_per_service, int
        ),
        credentials_check_interval=_positive_number(
            tree, "CredentialsCheckInterval", base.credentials_check_interval, float
        ),
    )


def guard_settings(tree: ConfigTree | None) -> GuardSettings:
    """The settings of this snapshot, read once and cached on it (defaults without a configuration)."""
    if tree is None:
        return GuardSettings()
    return tree.cached("rpcframework.server.guard", read_guard_settings)


def charged_identity(peer_dn: str | None, extra: ExtraCredentials, registry: Registry) -> str | None:
    """Who answers for a proposal's refusal: the user a ``TrustedHost`` acts for, else the peer's own DN (``None``
    for a peer without a certificate: its address answers).

    A delegation the registry would refuse (the peer is not a trusted host) is charged to the peer itself, so no
    one can get another user suspended by naming them."""
    if peer_dn is None:
        return None
    if isinstance(extra, DelegatedIdentity) and _acts_for_users(peer_dn, registry):
        return extra.dn
    return peer_dn


def proposal_identity(peer_dn: str | None, proposal: Proposal | None, services: Mapping[str, Service]) -> str | None:
    """:func:`charged_identity` for a proposal to one of ``services`` (the peer's DN when there is none)."""
    if proposal is None or peer_dn is None:
        return peer_dn
    service = services.get(proposal.service)
    if service is None:
        return peer_dn
    return charged_identity(peer_dn, proposal.extra_credentials, Registry.for_config(service.config_tree()))


def _acts_for_users(dn: str, registry: Registry) -> bool:
    host = registry.host_for_dn(dn)
    if host is None or registry.user_for_dn(dn) is not None:
        return False
    trusted = Property.TRUSTED_HOST.lower()
    return any(prop.lower() == trusted for prop in host.properties)


def _is_refused_credential(exc: BaseException) -> bool:
    """A handshake a real client can fail: its certificate refused by us, ours refused by it, or the connection
    closed before the handshake ended (a TCP health check or port probe, a job killed while it connects, a reset
    NAT entry). A timeout is not one of them: a handshake left hanging holds a connection on purpose."""
    if isinstance(exc, DeadlineExceeded):
        return False
    return isinstance(exc, PeerVerificationError | CredentialsError | ConnectionClosedError)


class Ticket:
    """One admitted connection: :meth:`release` gives its slot back (idempotent); failures are charged through it."""

    __slots__ = ("_guard", "_released", "address", "settings", "tree")

    def __init__(
        self, guard: ConnectionGuard, address: str, settings: GuardSettings, tree: ConfigTree | None = None
    ) -> None:
        self._guard = guard
        self.address = address
        self.settings = settings
        #: The configuration snapshot the address was admitted under (bans, ``settings``).
        self.tree = tree
        self._released = False

    def release(self) -> None:
        self._guard._release(self)

    def failed(self, what: str) -> None:
        """Traffic that never authenticated misbehaved (garbage, a handshake left hanging): the address pays."""
        self._guard.record_failure(self.address, what, self.settings)

    def handshake_failed(self, exc: BaseException) -> None:
        """Charge a failed handshake: a refused certificate or a connection closed during the handshake spends a
        rate-limit token; anything else (bytes that are not TLS, a handshake left hanging) is a strike."""
        if _is_refused_credential(exc):
            self._guard.record_refused_credentials(self.address, self.settings)
        else:
            self.failed("TLS handshake failed")

    def charge(self, what: str, identity: str | None) -> None:
        """An authenticated caller (``identity``) was refused or broke the protocol; ``None``: the address pays."""
        if identity is None:
            self.failed(what)
        else:
            self._guard.record_identity_failure(identity, what, self.settings)

    def suspension_refusal(self, identity: str | None) -> DErrorReturn | None:
        """The refusal of a proposal charged to ``identity`` while it is suspended, else ``None``."""
        left = self._guard.identity_suspension(identity) if identity is not None else None
        if left is None or identity is None:
            return None
        who = identity if len(identity) <= 200 else identity[:200] + "..."
        who = who if who.isprintable() else who.encode("unicode_escape").decode("ascii")
        return S_ERROR(
            ENOAUTH,
            f"{who} is suspended for {left:.0f} s more after repeated refused requests; stop the calls that are"
            " refused, or ask the service's operators to lift the suspension",
        )

    @property
    def guard(self) -> ConnectionGuard:
        return self._guard

    def attach(self, channel: Channel) -> None:
        """Tie a handshaken connection to this ticket: closing it releases the slot, abuse on it is charged."""
        channel.on_close = self.release
        channel.admission.ticket = self
        limits = (self.settings.max_bytes_in_flight_per_address, self.settings.max_bytes_in_flight_per_service)
        channel.holding = Holding(self._guard.in_flight, self.address, limits)
        channel.admission.peer_problem = ConnectionGuard.peer_problem(channel.stream.peer_identity, self.settings)
        if channel.closed:  # closed before we got here: nothing else will release the slot
            self.release()


class ConnectionGuard:
    """Connection counts, strikes, temporary bans and rate limits of one reactor; thread-safe.

    ``clock`` is :func:`time.monotonic` unless a test supplies its own; ``max_tracked`` bounds each table.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_tracked: int = MAX_TRACKED) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}
        self._total = 0
        self._addresses = StrikeTable(clock, max_tracked)  # strikes and bans of traffic that never authenticated
        self._identities = StrikeTable(clock, max_tracked)  # strikes and suspensions of authenticated callers
        self._handshakes = TokenBuckets(clock, max_tracked)  # refused certificates, rate limited per address
        #: Bytes held for requests no registered identity answers for (``MaxBytesInFlight*``).
        self.in_flight = BytesInFlight()
        #: Bumped whenever an identity is suspended: a connection's cached authorization is then checked again.
        self.identity_generation = 0

    @property
    def open_connections(self) -> int:
        return self._total

    def admit(self, address: str, tree: ConfigTree | None) -> Ticket | None:
        """A ticket for a new connection from ``address``, or ``None``: close it without a word."""
        if tree is not None and Registry.for_config(tree).is_banned(address):
            logger.debug("closed a connection from %s: listed in /Registry/BannedIPs", address)
            return None
        settings = guard_settings(tree)
        if self._addresses.banned_for(address) is not None:
            logger.debug("closed a connection from %s: temporarily banned", address)
            return None
        if not self._handshakes.allows(address):
            logger.debug("closed a connection from %s: too many refused certificates (HandshakeFailures)", address)
            return None
        with self._lock:
            if self._total >= settings.max_connections:
                logger.info("closed a connection from %s: %d connections open (MaxConnections)", address, self._total)
                return None
            count = self._open.get(address, 0)
            if count >= settings.max_connections_per_address:
                logger.info("closed a connection from %s: it has %d open (MaxConnectionsPerAddress)", address, count)
                return None
            self._open[address] = count + 1
            self._total += 1
        return Ticket(self, address, settings, tree)

    def _release(self, ticket: Ticket) -> None:
        with self._lock:
            if ticket._released:
                return
            ticket._released = True
            self._total -= 1
            left = self._open.get(ticket.address, 1) - 1
            if left > 0:
                self._open[ticket.address] = left
            else:
                self._open.pop(ticket.address, None)

    def record_failure(self, address: str, what: str, settings: GuardSettings) -> bool:
        """A strike against ``address`` (traffic that never authenticated); ``True`` when it has just been banned."""
        if not settings.autoban or settings.is_exempt(address):
            return False
        recent = self._addresses.strike(address, settings.strike_policy)
        if recent is None:
            return False
        logger.warning(
            "banned %s for %.0f s: %d failures within %.0f s, the last: %s",
            address,
            settings.autoban_duration,
            recent,
            settings.autoban_window,
            what,
        )
        return True

    def record_identity_failure(self, identity: str, what: str, settings: GuardSettings) -> bool:
        """A strike against an authenticated ``identity``; ``True`` when it has just been suspended."""
        if not settings.autoban:
            return False
        recent = self._identities.strike(identity, settings.strike_policy)
        if recent is None:
            return False
        self.identity_generation += 1
        logger.warning(
            "suspended %r for %.0f s: %d refused requests within %.0f s, the last: %s",
            identity,
            settings.autoban_duration,
            recent,
            settings.autoban_window,
            what,
        )
        return True

    def record_refused_credentials(self, address: str, settings: GuardSettings) -> float | None:
        """Spend a handshake-failure token of ``address``; the tokens left (``None``: exempt, nothing spent)."""
        if settings.is_exempt(address):
            return None
        left = self._handshakes.spend(address, settings.handshake_failure_rate, settings.handshake_failure_burst)
        if -1.0 < left < 0.0:  # logged once as the address runs out, not for every refused connection after
            logger.warning(
                "rate limiting %s: more than %d refused certificates, now %g per second (HandshakeFailures)",
                address,
                settings.handshake_failure_burst,
                settings.handshake_failure_rate,
            )
        return left

    @property
    def any_suspended(self) -> bool:
        """Whether an identity may be suspended now (``False``: no proposal needs the check)."""
        return self._identities.has_bans

    def identity_suspension(self, identity: str) -> float | None:
        """Seconds left of ``identity``'s suspension, or ``None``."""
        return self._identities.banned_for(identity)

    def temporary_bans(self) -> dict[str, float]:
        """Addresses banned right now and the seconds each ban has left (for operators and tests)."""
        return self._addresses.bans()

    def identity_suspensions(self) -> dict[str, float]:
        """Identities (DNs) suspended right now and the seconds each suspension has left."""
        return self._identities.bans()

    def rate_limited(self) -> dict[str, float]:
        """Addresses out of handshake-failure tokens and the seconds until they have one again."""
        return self._handshakes.limited()

    def lift_ban(self, address: str) -> bool:
        """End a temporary ban (or a rate limit) of ``address`` early (an operator's decision); ``True`` if there
        was one."""
        limited = self._handshakes.lift(address)
        return self._addresses.lift(address) or limited

    def lift_suspension(self, identity: str) -> bool:
        """End the suspension of ``identity`` early; ``True`` if there was one."""
        return self._identities.lift(identity)

    @staticmethod
    def peer_problem(identity: Any, settings: GuardSettings) -> str | None:
        """Why an authenticated peer may make no call here (``None``: it may ask; authorization decides)."""
        if settings.refuse_limited_proxies and identity is not None and getattr(identity, "is_limited_proxy", False):
            return "limited proxies are not accepted by this server; use a full proxy"
        return None
