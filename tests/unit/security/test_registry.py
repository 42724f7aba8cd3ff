"""The registry read from /Registry: DN lookups, groups, properties, VOs, default groups, BannedIPs."""

from __future__ import annotations

import ipaddress

import pytest

from rpcframework.config import ConfigTree, load_cfg_text, load_dict, load_toml_text
from rpcframework.security.registry import Registry

CFG = """
DIRAC
{
  VirtualOrganization =
}
Registry
{
  DefaultGroup = vo1_user, user
  BannedIPs = 192.0.2.1, 198.51.100.0/24, 2001:db8:bad::/48, ::2, not-an-ip
  Users
  {
    alice
    {
      DN = /DC=org/DC=example/CN=Alice Smith
      Email = alice@example.org
    }
    bob
    {
      DN = /DC=org/DC=example/CN=Bob, /DC=org/DC=other/CN=Bob Second
      DefaultGroup = vo2_admin
    }
    carol
    {
      DN = /DC=org/DC=example/CN=Carol
      Suspended = vo1
    }
    dave
    {
      DN = /DC=org/DC=example/CN=Dave
      Suspended = yes
    }
    loner
    {
      DN = /DC=org/DC=example/CN=Loner
    }
  }
  Groups
  {
    vo1_user
    {
      Users = alice, carol, dave
      Properties = NormalUser
      VO = vo1
    }
    vo2_admin
    {
      Users = bob
      Properties = NormalUser, CSAdministrator
      VO = vo2
    }
    vo2_user
    {
      Users = bob, carol
      Properties = NormalUser
      VO = vo2
    }
    novo
    {
      Users = alice
    }
  }
  Hosts
  {
    portal.example.org
    {
      DN = /DC=org/DC=example/CN=portal.example.org
      Properties = TrustedHost, SiteManager
    }
  }
}
"""


@pytest.fixture
def registry() -> Registry:
    return Registry.from_config(load_cfg_text(CFG, "registry.cfg"))


def test_user_and_host_by_dn(registry: Registry) -> None:
    alice = registry.user_for_dn("/DC=org/DC=example/CN=Alice Smith")
    assert alice is not None and alice.name == "alice" and alice.email == "alice@example.org"
    assert registry.username_for_dn("/DC=org/DC=other/CN=Bob Second") == "bob"  # several DNs per user
    host = registry.host_for_dn("/DC=org/DC=example/CN=portal.example.org")
    assert host is not None and host.properties == ("TrustedHost", "SiteManager")
    assert registry.hostname_for_dn("/DC=org/DC=example/CN=Alice Smith") is None
    assert registry.user_for_dn("/DC=org/DC=example/CN=portal.example.org") is None


@pytest.mark.parametrize(
    "dn",
    [
        "/DC=org/DC=example/CN=Alice Smith ",
        "/dc=org/dc=example/CN=Alice Smith",
        "/DC=org/DC=example/CN=Alice  Smith",
        "DC=org/DC=example/CN=Alice Smith",
        "/DC=org/DC=example/CN=Alice Smith/CN=proxy",
    ],
)
def test_dns_are_compared_exactly(registry: Registry, dn: str) -> None:
    assert registry.user_for_dn(dn) is None


def test_groups_properties_and_vos(registry: Registry) -> None:
    assert registry.groups_for_user("alice") == ("novo", "vo1_user")
    assert registry.groups_for_user("bob") == ("vo2_admin", "vo2_user")
    assert registry.groups_for_user("loner") == ()
    assert registry.groups_for_user("nobody") == ()
    assert registry.properties_for_group("vo2_admin") == ("NormalUser", "CSAdministrator")
    assert registry.properties_for_group("missing") == ()
    assert registry.properties_for_host("portal.example.org") == ("TrustedHost", "SiteManager")
    assert registry.vo_for_group("vo1_user") == "vo1"
    assert registry.vo_for_group("novo") is None
    assert registry.vo_for_group("missing") is None
    assert registry.groups_for_vo("vo2") == ("vo2_admin", "vo2_user")
    assert registry.is_user_in_group("carol", "vo2_user")
    assert not registry.is_user_in_group("carol", "vo2_admin")


def test_default_group(registry: Registry) -> None:
    # /Registry/DefaultGroup lists vo1_user first.
    assert registry.default_group_for_dn("/DC=org/DC=example/CN=Alice Smith") == "vo1_user"
    # The user's own DefaultGroup comes before the registry-wide list.
    assert registry.default_group_for_dn("/DC=org/DC=example/CN=Bob") == "vo2_admin"
    # Not in any listed default group: the first of their groups (sorted).
    registry2 = Registry.from_config(load_dict({"Registry": {"Groups": {"b": {"Users": "u"}, "a": {"Users": "u"}}}}))
    assert registry2.default_group_for_user("u") == "a"
    assert registry.default_group_for_dn("/DC=org/DC=example/CN=Loner") is None
    assert registry.default_group_for_dn("/unknown") is None


def test_dirac_default_group_is_user() -> None:
    tree = load_dict({"Registry": {"Groups": {"a": {"Users": "u"}, "user": {"Users": "u"}}}})
    assert Registry.from_config(tree).default_group_for_user("u") == "user"


def test_suspension(registry: Registry) -> None:
    carol = registry.users["carol"]
    assert carol.is_suspended_in("vo1") and not carol.is_suspended_in("vo2")
    dave = registry.users["dave"]
    assert dave.is_suspended_in("vo1") and dave.is_suspended_in(None)
    assert not registry.users["alice"].is_suspended_in("vo1")


def test_global_vo_for_groups_without_one() -> None:
    tree = load_dict({"DIRAC": {"VirtualOrganization": "solo"}, "Registry": {"Groups": {"g": {"Users": "u"}}}})
    assert Registry.from_config(tree).vo_for_group("g") == "solo"


@pytest.mark.parametrize(
    ("ip", "banned"),
    [
        ("192.0.2.1", True),
        ("192.0.2.2", False),
        ("198.51.100.0", True),
        ("198.51.100.255", True),
        ("198.51.101.1", False),
        ("2001:db8:bad::1", True),
        ("2001:db8:bad:ffff::1", True),
        ("2001:db8:bae::1", False),
        ("::2", True),
        ("::1", False),
        ("::ffff:192.0.2.1", True),  # IPv4-mapped: a dual-stack socket reports v4 peers like this
        ("::ffff:198.51.100.7", True),
        ("[2001:db8:bad::1]", True),
        ("fe80::1%eth0", False),
        ("garbage", False),
    ],
)
def test_banned_ips(registry: Registry, ip: str, banned: bool) -> None:
    assert registry.is_banned(ip) is banned


def test_ban_answers_stay_right_when_remembered_and_when_the_memory_starts_over(registry: Registry) -> None:
    for _ in range(2):  # the second round is answered from memory
        assert registry.is_banned("192.0.2.1") and not registry.is_banned("192.0.2.2")
    many = [f"10.{i // 256 % 256}.{i % 256}.1" for i in range(5000)]  # more than it remembers
    assert not any(registry.is_banned(ip) for ip in many)
    assert len(registry._ban_answers) <= 4096
    assert registry.is_banned("198.51.100.7") and registry.is_banned("::ffff:192.0.2.1")


def test_banned_accepts_address_objects(registry: Registry) -> None:
    assert registry.is_banned(ipaddress.ip_address("198.51.100.9"))
    assert not registry.is_banned(ipaddress.ip_address("203.0.113.1"))


def test_bad_entries_are_reported_not_fatal(registry: Registry) -> None:
    assert any("not-an-ip" in p for p in registry.problems)
    assert ipaddress.ip_network("198.51.100.0/24") in registry.banned_networks


def test_duplicate_dn_first_wins() -> None:
    tree = load_dict({"Registry": {"Users": {"first": {"DN": "/CN=x"}, "second": {"DN": "/CN=x"}}}})
    registry = Registry.from_config(tree)
    assert registry.username_for_dn("/CN=x") == "first"
    assert any("/CN=x" in p for p in registry.problems)


def test_empty_registry() -> None:
    registry = Registry.from_config(ConfigTree())
    assert registry.user_for_dn("/CN=x") is None
    assert not registry.is_banned("192.0.2.1")
    assert registry.default_groups == ("user",)


def test_for_config_builds_once_per_snapshot() -> None:
    tree = load_cfg_text(CFG)
    assert Registry.for_config(tree) is Registry.for_config(tree)
    assert Registry.for_config(load_cfg_text(CFG)) is not Registry.for_config(tree)


def test_toml_registry_matches_cfg() -> None:
    toml = load_toml_text(
        """
[Registry]
BannedIPs = ["192.0.2.1", "198.51.100.0/24"]
[Registry.Users.alice]
DN = "/DC=org/DC=example/CN=Alice Smith"
[Registry.Groups.vo1_user]
Users = ["alice"]
Properties = ["NormalUser"]
VO = "vo1"
"""
    )
    registry = Registry.from_config(toml)
    assert registry.username_for_dn("/DC=org/DC=example/CN=Alice Smith") == "alice"
    assert registry.properties_for_group("vo1_user") == ("NormalUser",)
    assert registry.is_banned("198.51.100.3")
