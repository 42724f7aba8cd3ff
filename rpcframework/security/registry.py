"""The registry: users, groups, hosts and banned addresses, read from the configuration (DIRAC layout).

::

    /Registry/Users/<name>/{DN, Email, Suspended, DefaultGroup}
    /Registry/Groups/<group>/{Users, Properties, VO}
    /Registry/Hosts/<name>/{DN, Properties}
    /Registry/DefaultGroup          list; the first one the user belongs to is their default group (DIRAC: "user")
    /Registry/BannedIPs             addresses and CIDR ranges, IPv4 and IPv6

A user's groups are the groups whose ``Users`` list names them. DNs are compared as exact strings, never
normalised: the DN a TLS peer presents is the DN the registry must spell. ``DN`` may hold several DNs
(comma-separated, as DIRAC reads it). ``Suspended`` lists the VOs in which the user is suspended (DIRAC); ``yes``
or ``true`` suspends them everywhere.

A :class:`Registry` is built once per configuration snapshot (:meth:`Registry.for_config` caches it on the
snapshot) and answers every lookup from dictionaries. Mistakes in the registry section (a bad BannedIPs entry, a
DN claimed twice) are logged and listed in :attr:`Registry.problems` instead of failing: one typo must not stop a
running service from authorizing anyone.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from rpcframework.config.tree import ConfigTree, parse_bool
from rpcframework.errors import ConfigurationError

logger = logging.getLogger(__name__)

REGISTRY_SECTION = "/Registry"
HOSTS_GROUP = "hosts"  # the pseudo-group of callers using a host certificate (DIRAC's KW_HOSTS_GROUP)
DIRAC_DEFAULT_GROUP = "user"  # DIRAC's fallback when /Registry/DefaultGroup is unset

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class UserEntry:
    name: str
    dns: tuple[str, ...]
    email: str | None = None
    suspended_vos: frozenset[str] = frozenset()
    suspended_everywhere: bool = False
    default_groups: tuple[str, ...] = ()
    options: Mapping[str, str] = field(default_factory=dict)

    def is_suspended_in(self, vo: str | None) -> bool:
        """Suspended everywhere, or in ``vo`` (DIRAC suspends per VO)."""
        return self.suspended_everywhere or (vo is not None and vo in self.suspended_vos)


@dataclass(frozen=True)
class HostEntry:
    name: str
    dns: tuple[str, ...]
    properties: tuple[str, ...] = ()
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GroupEntry:
    name: str
    users: tuple[str, ...] = ()
    properties: tuple[str, ...] = ()
    vo: str | None = None


def _parse_suspended(value: str) -> tuple[bool, frozenset[str]]:
    """``Suspended`` is a VO list in DIRAC; a plain boolean word is our shorthand for every VO."""
    if not value.strip():
        return False, frozenset()
    try:
        return parse_bool(value), frozenset()
    except ConfigurationError:
        return False, frozenset(item.strip() for item in value.split(",") if item.strip())


def _parse_network(item: str) -> IPNetwork:
    # strict=False accepts "10.1.2.3/8" as 10.0.0.0/8, which is what an operator typing it means.
    return ipaddress.ip_network(item.split("%", maxsplit=1)[0], strict=False)


def _as_address(ip: str | IPAddress) -> IPAddress | None:
    if not isinstance(ip, str):
        return ip
    text = ip.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return None


#: How many address strings a registry remembers ban answers for (see ``Registry.is_banned``).
_BAN_ANSWERS = 4096


class Registry:
    """Indexed, read-only view of ``/Registry``. Build with :meth:`from_config` or :meth:`for_config`."""

    def __init__(
        self,
        users: Mapping[str, UserEntry] | None = None,
        groups: Mapping[str, GroupEntry] | None = None,
        hosts: Mapping[str, HostEntry] | None = None,
        *,
        default_groups: tuple[str, ...] = (DIRAC_DEFAULT_GROUP,),
        banned: tuple[str, ...] = (),
        global_vo: str | None = None,
    ) -> None:
        self.users: Mapping[str, UserEntry] = dict(users or {})
        self.groups: Mapping[str, GroupEntry] = dict(groups or {})
        self.hosts: Mapping[str, HostEntry] = dict(hosts or {})
        self.default_groups = default_groups
        self.global_vo = global_vo
        self.problems: list[str] = []
        self._user_by_dn = self._index_dns("user", self.users)
        self._host_by_dn = self._index_dns("host", self.hosts)
        self._groups_by_user: dict[str, list[str]] = {}
        for group in sorted(self.groups):
            for username in self.groups[group].users:
                self._groups_by_user.setdefault(username, []).append(group)
        self._banned_addresses: frozenset[IPAddress] = frozenset()
        self._banned_networks: tuple[IPNetwork, ...] = ()
        self._index_banned(banned)
        # Servers ask for every accepted connection, mostly from the same few addresses; the answer is fixed for
        # this (read-only) registry, so remember it for a bounded number of address strings.
        self._ban_answers: dict[str, bool] = {}

    # -- construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: ConfigTree, section: str = REGISTRY_SECTION) -> Registry:
        reg = config.get_section(section)
        users = {name: _read_user(reg, name) for name in reg.sections("/Users")}
        hosts = {
            name: HostEntry(
                name,
                reg.get_list(f"/Hosts/{name}/DN"),
                reg.get_list(f"/Hosts/{name}/Properties"),
                {opt: reg.get_str(f"/Hosts/{name}/{opt}") for opt in reg.options(f"/Hosts/{name}")},
            )
            for name in reg.sections("/Hosts")
        }
        groups = {
            name: GroupEntry(
                name,
                reg.get_list(f"/Groups/{name}/Users"),
                reg.get_list(f"/Groups/{name}/Properties"),
                reg.get_str(f"/Groups/{name}/VO") or None,
            )
            for name in reg.sections("/Groups")
        }
        return cls(
            users,
            groups,
            hosts,
            default_groups=reg.get_list("/DefaultGroup", (DIRAC_DEFAULT_GROUP,)),
            banned=reg.get_list("/BannedIPs"),
            global_vo=config.get_str("/DIRAC/VirtualOrganization") or None,
        )

    @classmethod
    def for_config(cls, config: ConfigTree) -> Registry:
        """The registry of this snapshot, built on first use and then cached on the snapshot."""
        return config.cached("rpcframework.security.registry", cls.from_config)

    def _problem(self, text: str) -> None:
        logger.warning("registry: %s", text)
        self.problems.append(text)

    def _index_dns(self, kind: str, entries: Mapping[str, UserEntry] | Mapping[str, HostEntry]) -> dict[str, str]:
        index: dict[str, str] = {}
        for name, entry in entries.items():
            for dn in entry.dns:
                if dn in index:
                    # DIRAC answers with the first section that lists the DN; keep that, but say so.
                    self._problem(f"DN {dn} is listed by {kind}s {index[dn]} and {name}; using {index[dn]}")
                    continue
                index[dn] = name
        return index

    def _index_banned(self, items: tuple[str, ...]) -> None:
        addresses: set[IPAddress] = set()
        networks: list[IPNetwork] = []
        for item in items:
            try:
                net = _parse_network(item)
            except ValueError:
                self._problem(f"BannedIPs: {item!r} is not an IP address or CIDR range; ignored")
                continue
            if net.num_addresses == 1:
                addresses.add(net.network_address)
            else:
                networks.append(net)
        self._banned_addresses = frozenset(addresses)
        self._banned_networks = tuple(networks)

    # -- lookups ------------------------------------------------------------------------------------------------
    def user_for_dn(self, dn: str) -> UserEntry | None:
        name = self._user_by_dn.get(dn)
        return None if name is None else self.users[name]

    def host_for_dn(self, dn: str) -> HostEntry | None:
        name = self._host_by_dn.get(dn)
        return None if name is None else self.hosts[name]

    def username_for_dn(self, dn: str) -> str | None:
        return self._user_by_dn.get(dn)

    def hostname_for_dn(self, dn: str) -> str | None:
        return self._host_by_dn.get(dn)

    def groups_for_user(self, username: str) -> tuple[str, ...]:
        """The groups whose ``Users`` list names ``username``, sorted (DIRAC sorts them too)."""
        return tuple(self._groups_by_user.get(username, ()))

    def properties_for_group(self, group: str) -> tuple[str, ...]:
        entry = self.groups.get(group)
        return entry.properties if entry else ()

    def properties_for_host(self, hostname: str) -> tuple[str, ...]:
        entry = self.hosts.get(hostname)
        return entry.properties if entry else ()

    def vo_for_group(self, group: str) -> str | None:
        """The group's ``VO``; a single-VO installation's ``/DIRAC/VirtualOrganization`` when the group has none."""
        entry = self.groups.get(group)
        if entry is None:
            return None
        return entry.vo or self.global_vo

    def groups_for_vo(self, vo: str) -> tuple[str, ...]:
        return tuple(sorted(name for name in self.groups if self.vo_for_group(name) == vo))

    def default_group_for_user(self, username: str) -> str | None:
        """The user's own ``DefaultGroup`` list, then ``/Registry/DefaultGroup``: the first they belong to; else
        their first group (sorted); None when they have no group."""
        user_groups = self.groups_for_user(username)
        user = self.users.get(username)
        preferred = (*(user.default_groups if user else ()), *self.default_groups)
        for group in preferred:
            if group in user_groups:
                return group
        return user_groups[0] if user_groups else None

    def default_group_for_dn(self, dn: str) -> str | None:
        username = self.username_for_dn(dn)
        return None if username is None else self.default_group_for_user(username)

    def is_user_in_group(self, username: str, group: str) -> bool:
        entry = self.groups.get(group)
        return entry is not None and username in entry.users

    # -- bans ---------------------------------------------------------------------------------------------------
    @property
    def banned_networks(self) -> tuple[IPNetwork, ...]:
        singles = tuple(ipaddress.ip_network(a) for a in sorted(self._banned_addresses, key=str))
        return singles + self._banned_networks

    def is_banned(self, ip: str | IPAddress) -> bool:
        """True when ``ip`` matches a ``BannedIPs`` address or range (IPv4-mapped IPv6 is checked as IPv4)."""
        if not self._banned_addresses and not self._banned_networks:
            return False
        if not isinstance(ip, str):
            return self._check_banned(ip)
        answer = self._ban_answers.get(ip)
        if answer is None:
            answer = self._check_banned(ip)
            if len(self._ban_answers) >= _BAN_ANSWERS:
                self._ban_answers.clear()  # many distinct addresses: start over rather than grow
            self._ban_answers[ip] = answer
        return answer

    def _check_banned(self, ip: str | IPAddress) -> bool:
        address = _as_address(ip)
        if address is None:
            return False
        candidates: list[IPAddress] = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)
        for candidate in candidates:
            if candidate in self._banned_addresses:
                return True
            if any(candidate in net for net in self._banned_networks if net.version == candidate.version):
                return True
        return False


def _read_user(reg: ConfigTree, name: str) -> UserEntry:
    base = f"/Users/{name}"
    everywhere, vos = _parse_suspended(reg.get_str(f"{base}/Suspended"))
    return UserEntry(
        name=name,
        dns=reg.get_list(f"{base}/DN"),
        email=reg.get_str(f"{base}/Email") or None,
        suspended_vos=vos,
        suspended_everywhere=everywhere,
        default_groups=reg.get_list(f"{base}/DefaultGroup"),
        options={opt: reg.get_str(f"{base}/{opt}") for opt in reg.options(base)},
    )
