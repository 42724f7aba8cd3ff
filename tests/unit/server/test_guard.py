"""The connection guard without sockets: settings, connection counts, temporary bans with a fake clock."""

from __future__ import annotations

import ipaddress
import logging

import pytest

from rpcframework.config import load_dict
from rpcframework.server.connection import ChannelLimits
from rpcframework.server.guard import ConnectionGuard, GuardSettings, guard_settings, read_guard_settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _tree(**server: object):
    return load_dict({"DIRAC": {"Security": {"Server": server}}})


def test_defaults_without_configuration():
    settings = guard_settings(None)
    assert settings == GuardSettings()
    assert settings.autoban and settings.autoban_exempt == ()  # loopback is not exempt unless configured
    assert settings.max_connections_per_address < settings.max_connections


def test_settings_read_from_the_tree_and_cached_per_snapshot():
    tree = _tree(
        MaxConnections=10,
        MaxConnectionsPerAddress=2,
        MaxCallsPerConnection=7,
        HandshakeTimeout="1.5",
        IdleTimeout=4,
        RefuseLimitedProxies="yes",
        AutoBan={"Enabled": "yes", "MaxFailures": 3, "Window": "5", "Duration": "9", "Exempt": "127.0.0.0/8, ::1"},
    )
    settings = guard_settings(tree)
    assert guard_settings(tree) is settings
    assert (settings.max_connections, settings.max_connections_per_address, settings.max_calls_per_connection) == (
        10,
        2,
        7,
    )
    assert settings.handshake_timeout == 1.5 and settings.refuse_limited_proxies
    assert (settings.autoban_max_failures, settings.autoban_window, settings.autoban_duration) == (3, 5.0, 9.0)
    assert settings.autoban_exempt == (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1"))
    assert settings.is_exempt("127.0.0.9") and settings.is_exempt("::ffff:127.0.0.1") and not settings.is_exempt("::2")
    limits = settings.channel_limits(ChannelLimits(read_timeout=3.0))
    assert (limits.read_timeout, limits.idle_timeout, limits.max_calls) == (3.0, 4.0, 7)


def test_bad_values_are_logged_and_replaced_by_defaults(caplog):
    caplog.set_level(logging.WARNING)
    settings = read_guard_settings(_tree(MaxConnections="lots", IdleTimeout="-1", AutoBan={"Enabled": "maybe"}))
    assert settings.max_connections == GuardSettings().max_connections and settings.idle_timeout is None
    assert settings.autoban
    assert "MaxConnections" in caplog.text and "IdleTimeout" in caplog.text


def test_connection_limits_per_address_and_in_total():
    guard = ConnectionGuard()
    tree = _tree(MaxConnections=3, MaxConnectionsPerAddress=2)
    first, second = guard.admit("192.0.2.1", tree), guard.admit("192.0.2.1", tree)
    assert first and second and guard.admit("192.0.2.1", tree) is None
    third = guard.admit("192.0.2.2", tree)
    assert third and guard.admit("192.0.2.3", tree) is None  # the total is reached
    first.release()
    first.release()  # idempotent: the slot is given back once
    assert guard.open_connections == 2
    assert guard.admit("192.0.2.3", tree) is not None


def test_registry_bans_apply_first():
    guard = ConnectionGuard()
    tree = load_dict({"Registry": {"BannedIPs": "198.51.100.0/24, 2001:db8:bad::/48"}})
    assert guard.admit("198.51.100.7", tree) is None
    assert guard.admit("2001:db8:bad::1", tree) is None
    assert guard.admit("198.51.101.7", tree) is not None


def test_repeated_failures_ban_an_address_for_a_while():
    clock = Clock()
    guard = ConnectionGuard(clock)
    tree = _tree(AutoBan={"MaxFailures": 3, "Window": 10, "Duration": 60})
    settings = guard_settings(tree)
    assert not guard.record_failure("192.0.2.9", "protocol error", settings)
    clock.now += 11  # outside the window: the first failure no longer counts
    assert not guard.record_failure("192.0.2.9", "protocol error", settings)
    assert not guard.record_failure("192.0.2.9", "protocol error", settings)
    assert guard.record_failure("192.0.2.9", "refused authorization", settings)
    assert guard.admit("192.0.2.9", tree) is None
    assert guard.admit("192.0.2.10", tree) is not None  # other addresses are unaffected
    assert 59 < guard.temporary_bans()["192.0.2.9"] <= 60
    clock.now += 61
    assert guard.admit("192.0.2.9", tree) is not None and guard.temporary_bans() == {}


def test_exempt_and_disabled_never_ban():
    guard = ConnectionGuard()
    exempt = guard_settings(_tree(AutoBan={"MaxFailures": 1, "Exempt": "127.0.0.1"}))
    off = guard_settings(_tree(AutoBan={"MaxFailures": 1, "Enabled": "no"}))
    assert not guard.record_failure("127.0.0.1", "x", exempt)
    assert not guard.record_failure("192.0.2.1", "x", off)
    assert guard.temporary_bans() == {}


def test_lift_ban():
    guard = ConnectionGuard()
    settings = guard_settings(_tree(AutoBan={"MaxFailures": 1}))
    assert guard.record_failure("192.0.2.1", "x", settings)
    assert guard.lift_ban("192.0.2.1") and not guard.lift_ban("192.0.2.1")


def test_memory_stays_bounded(monkeypatch):
    monkeypatch.setattr("rpcframework.server.guard._MAX_TRACKED", 100)
    guard = ConnectionGuard()
    settings = guard_settings(_tree(AutoBan={"MaxFailures": 2}))
    for index in range(1000):
        guard.record_failure(f"10.0.{index // 256}.{index % 256}", "x", settings)
    assert len(guard._failures) <= 100


class _Identity:
    def __init__(self, limited: bool) -> None:
        self.is_limited_proxy = limited


@pytest.mark.parametrize(
    ("refuse", "limited", "problem"), [(True, True, True), (True, False, False), (False, True, False)]
)
def test_limited_proxies_refused_only_where_configured(refuse, limited, problem):
    settings = GuardSettings(refuse_limited_proxies=refuse)
    assert (ConnectionGuard.peer_problem(_Identity(limited), settings) is not None) is problem
