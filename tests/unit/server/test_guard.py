"""The connection guard without sockets: settings, connection counts, temporary bans with a fake clock."""

from __future__ import annotations

import ipaddress
import logging

import pytest
from support.clock import FakeClock

from rpcframework.config import load_dict
from rpcframework.server.connection import ChannelLimits
from rpcframework.server.guard import (
    ConnectionGuard,
    GuardSettings,
    charged_identity,
    guard_settings,
    read_guard_settings,
)


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
    clock = FakeClock(1000.0)
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


def test_memory_stays_bounded():
    guard = ConnectionGuard(max_tracked=100)
    settings = guard_settings(_tree(AutoBan={"MaxFailures": 2}))
    for index in range(1000):
        address = f"10.0.{index // 256}.{index % 256}"
        guard.record_failure(address, "x", settings)
        guard.record_identity_failure(f"/CN=user{index}" + "x" * 5000, "x", settings)
        guard.record_refused_credentials(address, settings)
    assert len(guard._addresses) <= 200 and len(guard._identities) <= 200 and len(guard._handshakes) <= 100


def test_refusals_of_an_identity_suspend_it_and_never_its_address():
    clock = FakeClock(1000.0)
    guard = ConnectionGuard(clock)
    tree = _tree(AutoBan={"MaxFailures": 3, "Window": 10, "Duration": 60})
    settings = guard_settings(tree)
    generation = guard.identity_generation
    for _ in range(2):
        assert not guard.record_identity_failure("/CN=alice", "refused authorization", settings)
    assert not guard.any_suspended and guard.identity_generation == generation
    assert guard.record_identity_failure("/CN=alice", "refused authorization", settings)
    assert guard.any_suspended and guard.identity_generation == generation + 1
    assert 59 < guard.identity_suspensions()["/CN=alice"] <= 60
    assert guard.identity_suspension("/CN=bob") is None
    assert guard.temporary_bans() == {} and guard.admit("192.0.2.9", tree) is not None
    clock.now += 61
    assert guard.identity_suspension("/CN=alice") is None
    assert guard.record_identity_failure("/CN=bob", "x", settings) is False
    assert not guard.lift_suspension("/CN=alice")


def test_refused_certificates_are_rate_limited_per_address_and_never_banned():
    clock = FakeClock(1000.0)
    guard = ConnectionGuard(clock)
    tree = _tree(HandshakeFailures={"Rate": "0.5", "Burst": 3})
    settings = guard_settings(tree)
    for _ in range(3):
        assert guard.admit("192.0.2.7", tree) is not None
        guard.record_refused_credentials("192.0.2.7", settings)
    assert guard.admit("192.0.2.7", tree) is None  # out of tokens: closed before TLS
    assert guard.admit("192.0.2.8", tree) is not None  # another address is unaffected
    assert guard.temporary_bans() == {} and 1.9 < guard.rate_limited()["192.0.2.7"] <= 2.0
    clock.now += 2.0  # one token back
    assert guard.admit("192.0.2.7", tree) is not None
    guard.record_refused_credentials("192.0.2.7", settings)
    assert guard.admit("192.0.2.7", tree) is None
    assert guard.lift_ban("192.0.2.7") and guard.admit("192.0.2.7", tree) is not None
    exempt = guard_settings(_tree(AutoBan={"Exempt": "192.0.2.0/24"}))
    assert guard.record_refused_credentials("192.0.2.1", exempt) is None


def test_handshake_failures_are_told_apart():
    from rpcframework.errors import CredentialsError, DeadlineExceeded, HandshakeError, PeerVerificationError

    guard = ConnectionGuard()
    tree = _tree(AutoBan={"MaxFailures": 2}, HandshakeFailures={"Burst": 2})
    for exc in (PeerVerificationError("expired"), CredentialsError("the peer refused our certificate")):
        ticket = guard.admit("192.0.2.5", tree)
        assert ticket is not None
        ticket.handshake_failed(exc)
        ticket.release()
    assert guard.admit("192.0.2.5", tree) is None and guard.temporary_bans() == {}
    for exc in (HandshakeError("not TLS"), DeadlineExceeded("slow")):
        ticket = guard.admit("192.0.2.6", tree)
        assert ticket is not None
        ticket.handshake_failed(exc)
        ticket.release()
    assert "192.0.2.6" in guard.temporary_bans()


def test_a_refusal_is_charged_to_the_user_a_trusted_host_acts_for():
    from rpcframework.protocol.messages import HOST_CREDENTIALS, NO_EXTRA_CREDENTIALS, DelegatedIdentity
    from rpcframework.security.registry import Registry

    registry = Registry.for_config(
        load_dict(
            {
                "Registry": {
                    "Users": {"alice": {"DN": "/CN=alice"}, "twin": {"DN": "/CN=twin"}},
                    "Groups": {"users": {"Users": "alice, twin"}},
                    "Hosts": {
                        "portal": {"DN": "/CN=portal", "Properties": "TrustedHost"},
                        "worker": {"DN": "/CN=worker", "Properties": "GenericPilot"},
                        "twin": {"DN": "/CN=twin", "Properties": "TrustedHost"},
                    },
                }
            }
        )
    )
    as_alice = DelegatedIdentity("/CN=alice", "users")
    assert charged_identity("/CN=portal", as_alice, registry) == "/CN=alice"
    assert charged_identity("/CN=portal", NO_EXTRA_CREDENTIALS, registry) == "/CN=portal"
    assert charged_identity("/CN=portal", HOST_CREDENTIALS, registry) == "/CN=portal"
    # Whoever cannot delegate answers for its own attempt: nobody gets another user suspended by naming them.
    assert charged_identity("/CN=worker", as_alice, registry) == "/CN=worker"
    assert charged_identity("/CN=twin", as_alice, registry) == "/CN=twin"
    assert charged_identity("/CN=stranger", as_alice, registry) == "/CN=stranger"
    assert charged_identity(None, as_alice, registry) is None  # no certificate: the address answers


class _Identity:
    def __init__(self, limited: bool) -> None:
        self.is_limited_proxy = limited


@pytest.mark.parametrize(
    ("refuse", "limited", "problem"), [(True, True, True), (True, False, False), (False, True, False)]
)
def test_limited_proxies_refused_only_where_configured(refuse, limited, problem):
    settings = GuardSettings(refuse_limited_proxies=refuse)
    assert (ConnectionGuard.peer_problem(_Identity(limited), settings) is not None) is problem
