"""The connection guard: who may open a connection, how many at once, and who is banned for a while.

The reactor asks :meth:`ConnectionGuard.admit` for every accepted socket *before* any TLS work, so a refused peer
costs one ``accept`` and one ``close``. A peer is refused (closed silently) when

* its address matches ``/Registry/BannedIPs`` (read from the current configuration snapshot, so edits apply
  without a restart);
* it is under a *temporary ban*: ``AutoBan/MaxFailures`` failures (failed or timed-out TLS handshakes, refused
  authorization, protocol errors) within ``AutoBan/Window`` seconds ban the address for ``AutoBan/Duration``
  seconds. Loopback is not special: only ``AutoBan/Exempt`` exempts an address;
* the server already holds ``MaxConnections`` connections, or ``MaxConnectionsPerAddress`` from that address.

An admitted connection carries a :class:`Ticket` until it closes; the ticket gives the slot back and reports
failures. Settings live in ``/DIRAC/Security/Server`` (:func:`guard_settings`) and are read once per snapshot.

Memory is bounded whatever peers do: at most ``_MAX_TRACKED`` addresses are remembered (the oldest forgotten
first) and each keeps at most ``MaxFailures`` timestamps.
"""

from __future__ import annotations

import collections
import dataclasses
import ipaddress
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

from rpcframework.config.tree import ConfigTree
from rpcframework.errors import ConfigurationError
from rpcframework.security.registry import Registry

if TYPE_CHECKING:
    from rpcframework.server.connection import Channel, ChannelLimits

__all__ = ["GUARD_SECTION", "ConnectionGuard", "GuardSettings", "Ticket", "guard_settings", "read_guard_settings"]

logger = logging.getLogger(__name__)

GUARD_SECTION: Final = "/DIRAC/Security/Server"
#: Addresses whose failures or bans are remembered at once; beyond that the oldest entries are dropped.
_MAX_TRACKED: Final = 65_536

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
    max_message_size: int | None = None
    refuse_limited_proxies: bool = False
    autoban: bool = True
    autoban_max_failures: int = 50
    autoban_window: float = 60.0
    autoban_duration: float = 300.0
    autoban_exempt: tuple[IPNetwork, ...] = ()
    credentials_check_interval: float = 60.0

    def channel_limits(self, base: ChannelLimits) -> ChannelLimits:
        """``base`` (the reactor's arguments) with what the configuration sets instead."""
        return dataclasses.replace(
            base,
            read_timeout=self.read_timeout or base.read_timeout,
            idle_timeout=self.idle_timeout or base.idle_timeout,
            max_message_size=self.max_message_size or base.max_message_size,
            max_calls=self.max_calls_per_connection,
        )

    def is_exempt(self, address: str) -> bool:
        ip = _ip(address)
        return ip is not None and any(ip.version == net.version and ip in net for net in self.autoban_exempt)


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
        max_message_size=_positive_number(tree, "MaxMessageSize", None, int),
        refuse_limited_proxies=_flag(tree, "RefuseLimitedProxies", base.refuse_limited_proxies),
        autoban=_flag(tree, "AutoBan/Enabled", base.autoban),
        autoban_max_failures=_positive_number(tree, "AutoBan/MaxFailures", base.autoban_max_failures, int),
        autoban_window=_positive_number(tree, "AutoBan/Window", base.autoban_window, float),
        autoban_duration=_positive_number(tree, "AutoBan/Duration", base.autoban_duration, float),
        autoban_exempt=_networks(tree, "AutoBan/Exempt"),
        credentials_check_interval=_positive_number(
            tree, "CredentialsCheckInterval", base.credentials_check_interval, float
        ),
    )


def guard_settings(tree: ConfigTree | None) -> GuardSettings:
    """The settings of this snapshot, read once and cached on it (defaults without a configuration)."""
    if tree is None:
        return GuardSettings()
    return tree.cached("rpcframework.server.guard", read_guard_settings)


class Ticket:
    """One admitted connection: :meth:`release` gives its slot back (idempotent), :meth:`failed` reports abuse."""

    __slots__ = ("_guard", "_released", "address", "settings")

    def __init__(self, guard: ConnectionGuard, address: str, settings: GuardSettings) -> None:
        self._guard = guard
        self.address = address
        self.settings = settings
        self._released = False

    def release(self) -> None:
        self._guard._release(self)

    def failed(self, what: str) -> None:
        self._guard.record_failure(self.address, what, self.settings)

    def attach(self, channel: Channel) -> None:
        """Tie a handshaken connection to this ticket: closing it releases the slot, abuse on it is counted."""
        channel.on_close = self.release
        channel.on_failure = self.failed
        channel.peer_problem = ConnectionGuard.peer_problem(channel.stream.peer_identity, self.settings)
        if channel.closed:  # closed before we got here: nothing else will release the slot
            self.release()


class ConnectionGuard:
    """Connection counts, failure history and temporary bans of one reactor; thread-safe.

    ``clock`` is :func:`time.monotonic` unless a test supplies its own.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}
        self._total = 0
        # Insertion-ordered: the first entries are the oldest, dropped first when too many addresses are tracked.
        self._failures: dict[str, collections.deque[float]] = {}
        self._banned_until: dict[str, float] = {}

    @property
    def open_connections(self) -> int:
        return self._total

    def admit(self, address: str, tree: ConfigTree | None) -> Ticket | None:
        """A ticket for a new connection from ``address``, or ``None``: close it without a word."""
        if tree is not None and Registry.for_config(tree).is_banned(address):
            logger.debug("closed a connection from %s: listed in /Registry/BannedIPs", address)
            return None
        settings = guard_settings(tree)
        with self._lock:
            until = self._banned_until.get(address)
            if until is not None:
                if until > self._clock():
                    logger.debug("closed a connection from %s: temporarily banned", address)
                    return None
                del self._banned_until[address]
            if self._total >= settings.max_connections:
                logger.info("closed a connection from %s: %d connections open (MaxConnections)", address, self._total)
                return None
            count = self._open.get(address, 0)
            if count >= settings.max_connections_per_address:
                logger.info("closed a connection from %s: it has %d open (MaxConnectionsPerAddress)", address, count)
                return None
            self._open[address] = count + 1
            self._total += 1
        return Ticket(self, address, settings)

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
        """Count a failure from ``address``; ``True`` when it has just been banned for a while."""
        if not settings.autoban or settings.is_exempt(address):
            return False
        with self._lock:
            now = self._clock()
            history = self._failures.pop(address, None)
            if history is None:
                history = collections.deque(maxlen=settings.autoban_max_failures)
            history.append(now)
            self._failures[address] = history  # re-inserted: now the most recently seen
            recent = sum(1 for stamp in history if now - stamp <= settings.autoban_window)
            if recent < settings.autoban_max_failures:
                self._forget_oldest()
                return False
            del self._failures[address]
            self._banned_until.pop(address, None)
            self._banned_until[address] = now + settings.autoban_duration
            self._forget_oldest()
        logger.warning(
            "banned %s for %.0f s: %d failures within %.0f s, the last: %s",
            address,
            settings.autoban_duration,
            recent,
            settings.autoban_window,
            what,
        )
        return True

    def _forget_oldest(self) -> None:
        for table in (self._failures, self._banned_until):
            while len(table) > _MAX_TRACKED:
                del table[next(iter(table))]

    def temporary_bans(self) -> dict[str, float]:
        """Addresses banned right now and the seconds each ban has left (for operators and tests)."""
        with self._lock:
            now = self._clock()
            return {address: until - now for address, until in self._banned_until.items() if until > now}

    def lift_ban(self, address: str) -> bool:
        """End a temporary ban early (an operator's decision); ``True`` if there was one."""
        with self._lock:
            self._failures.pop(address, None)
            return self._banned_until.pop(address, None) is not None

    @staticmethod
    def peer_problem(identity: Any, settings: GuardSettings) -> str | None:
        """Why an authenticated peer may make no call here (``None``: it may ask; authorization decides)."""
        if settings.refuse_limited_proxies and identity is not None and getattr(identity, "is_limited_proxy", False):
            return "limited proxies are not accepted by this server; use a full proxy"
        return None
