"""``describe`` answers each caller with exactly what it may call (same rules, registry and delegation as a call),
and "Unknown method" suggestions name only such methods; peer-sent names are escaped before they are echoed."""

from __future__ import annotations

from typing import Any

import pytest
from support.security_kit import ALICE_DN, BOB_DN, PROPOSAL, SERVICE, ProbeHandler, exchange, tls_stream
from support.wire import frame

import rpcframework
from rpcframework.client import Client

pytestmark = pytest.mark.timeout(60)

ALL_RULE = {"describe", "open", "ping", "whoami"}
AUTHENTICATED = ALL_RULE | {"boom", "count", "who"}


def _listed(answer: dict[str, Any]) -> set[str]:
    assert answer["OK"], answer
    assert answer["Value"]["service"] == SERVICE
    return {method["name"] for method in answer["Value"]["methods"]}


def _assert_nothing_uncallable(client: Client, listed: set[str]) -> None:
    """Every method of the table not listed is refused to this caller (1111); every listed one is admitted."""
    for name in ProbeHandler.method_table().methods:
        answer = client.remote(name).call([] if name not in ("who", "count", "echo") else [None])
        refused = not answer["OK"] and answer.get("Errno") == 1111
        assert refused == (name not in listed), (name, answer)


def test_user_sees_the_authenticated_methods_but_not_the_admin_one(kit, serve):
    reactor = serve()
    with kit.client(reactor.url(SERVICE)) as user:
        answer = user.describe()
        listed = _listed(answer)
        assert listed == AUTHENTICATED  # not secret (ServiceAdministrator), not echo (no rule: denied)
        _assert_nothing_uncallable(user, listed)
    who = next(m for m in answer["Value"]["methods"] if m["name"] == "who")
    assert who["params"] == [{"name": "nonce", "type": "str", "required": True, "kind": "positional"}]
    assert answer["Value"]["transfers"] == [] and answer["Value"]["version"] == rpcframework.__version__


def test_unregistered_certificate_sees_only_open_methods(kit, serve):
    reactor = serve()
    with kit.client(reactor.url(SERVICE), proxy=kit.stranger.proxy_file) as stranger:
        listed = _listed(stranger.describe())
        assert listed == ALL_RULE
        _assert_nothing_uncallable(stranger, listed)


def test_admin_by_delegation_sees_the_admin_method_and_the_portal_itself_does_not(kit, serve):
    reactor = serve()
    with kit.client(reactor.url(SERVICE), host=True) as portal:
        assert _listed(portal.describe()) == AUTHENTICATED
        with rpcframework.delegate(BOB_DN, "admins"):
            listed = _listed(portal.describe())
            assert listed == AUTHENTICATED | {"secret"}
            _assert_nothing_uncallable(portal, listed)
        with rpcframework.delegate(BOB_DN, "users"):
            assert _listed(portal.describe()) == AUTHENTICATED


def test_delegation_to_a_foreign_group_or_from_a_user_is_refused_not_described(kit, serve):
    reactor = serve()
    with kit.client(reactor.url(SERVICE), host=True) as portal, rpcframework.delegate(ALICE_DN, "admins"):
        refused = portal.describe()
    assert not refused["OK"] and refused["Errno"] == 1111 and "delegation refused" in refused["Message"]
    with kit.client(reactor.url(SERVICE)) as user, rpcframework.delegate(BOB_DN, "admins"):
        refused = user.describe()
    assert not refused["OK"] and refused["Errno"] == 1111 and "TrustedHost" in refused["Message"]


def test_configuration_rules_apply_to_describe_as_to_calls(kit, serve):
    """Authorization/secret in the configuration replaces the handler's rule for both (the admin loses it, the user
    gains it), and Authorization/describe can close describe itself."""
    probe = {"Systems": {"Sec": {"Services": {"Probe": {"Authorization": {"secret": "NormalUser"}}}}}}
    reactor = serve(probe)
    with kit.client(reactor.url(SERVICE)) as user:
        assert "secret" in _listed(user.describe())
    with kit.client(reactor.url(SERVICE), host=True) as portal, rpcframework.delegate(BOB_DN, "admins"):
        assert "secret" not in _listed(portal.describe())
    closed = serve(
        {"Systems": {"Sec": {"Services": {"Probe": {"Authorization": {"describe": "ServiceAdministrator"}}}}}}
    )
    with kit.client(closed.url(SERVICE)) as user:
        refused = user.describe()
        assert not refused["OK"] and refused["Errno"] == 1111
    with kit.client(closed.url(SERVICE), host=True) as portal, rpcframework.delegate(BOB_DN, "admins"):
        assert "describe" in _listed(portal.describe())


def test_unknown_method_suggests_only_callable_methods(kit, serve):
    reactor = serve()
    with kit.client(reactor.url(SERVICE)) as user:
        typo = user.remote("cout").call([[]])
        hidden = user.remote("secrte").call([])
    assert typo["Message"] == "Unknown method cout; did you mean count?"
    assert hidden["Message"] == "Unknown method secrte"  # secret exists but this caller may not call it
    with kit.client(reactor.url(SERVICE), host=True) as portal, rpcframework.delegate(BOB_DN, "admins"):
        assert portal.remote("secrte").call([])["Message"] == "Unknown method secrte; did you mean secret?"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("who\n\x1b[31mFORGED", "Unknown method who\\x0a\\x1b[31mFORGED"),
        ("x" * 200, "Unknown method " + "x" * 77 + "..."),
        ("wh\u00f6", "Unknown method wh\\xf6; did you mean who?"),
    ],
)
def test_odd_method_names_are_escaped_and_cut_in_the_answer(kit, serve, name, expected):
    reactor = serve()
    with kit.client(reactor.url(SERVICE)) as user:
        answer = user.remote(name).call([])
        assert answer["Message"] == expected
        assert user.ping()["OK"]  # the service still serves


def test_describe_over_a_raw_dirac_style_connection_from_an_unregistered_certificate(kit, serve):
    """A DISET-shaped exchange (no extensions) gets the same filtered answer."""
    reactor = serve()
    stream = tls_stream(reactor, kit.tls_for(kit.stranger.proxy_file))
    received, _ = exchange(stream, frame(PROPOSAL % b"describe"), frame(b'{"OK": true, "Value": []}'))
    assert b'"secret"' not in received and b'"who"' not in received and b'"open"' in received


@pytest.mark.parametrize("group", ["hosts", "users"])
def test_a_trusted_host_cannot_delegate_as_another_host(kit, serve, group):
    """Found while attacking describe: [host DN, "hosts"] (or any group) used to give the portal the other host's
    identity and properties (GenericPilot here), in calls and in what describe listed."""
    reactor = serve()
    with kit.client(reactor.url(SERVICE), host=True) as portal, rpcframework.delegate(kit.untrusted_host.dn, group):
        for answer in (portal.describe(), portal.who("x"), portal.open()):
            assert not answer["OK"] and answer["Errno"] == 1111, answer
            assert "delegation refused" in answer["Message"] and "is a host" in answer["Message"]
