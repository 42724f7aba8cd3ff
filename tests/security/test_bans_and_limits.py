"""Attacks on the front door: banned addresses, repeated failures, connection floods, a slowloris crowd, and long
reused connections. Other loopback addresses (127.0.0.2 ...) stand for other machines."""

from __future__ import annotations

import contextlib
import json
import os

import pytest
from support.security_kit import PROPOSAL, raw_socket, still_serves, tls_stream
from support.waiting import wait_for
from support.wire import frame, read_until_closed

from rpcframework.config import ConfigStore

pytestmark = pytest.mark.timeout(60)

CLIENT_HELLO_START = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"


def _source_or_skip(reactor, source):
    try:
        return raw_socket(reactor, source)
    except OSError as exc:
        pytest.skip(f"cannot use {source} as a source address here: {exc}")


def _silently_closed(sock) -> bool:
    sock.sendall(CLIENT_HELLO_START)
    received, closed = read_until_closed(sock, timeout=3)
    sock.close()
    return received == b"" and closed


def test_banned_ip_list_applies_before_tls_and_reloads_without_restart(kit, serve, tmp_path):
    config_file = tmp_path / "live.json"
    config_file.write_text(json.dumps(kit.config_dict({"Registry": {"BannedIPs": "127.0.0.2, ::1, 10.0.0.0/8"}})))
    toml = tmp_path / "live.toml"
    reactor = serve(store=_json_store(config_file, toml))
    assert _silently_closed(_source_or_skip(reactor, "127.0.0.2"))
    still_serves(kit, reactor)
    # The operator lifts the ban on 127.0.0.2 and bans 127.0.0.0/30 instead: no restart.
    _rewrite(config_file, toml, kit.config_dict({"Registry": {"BannedIPs": "127.0.0.0/30"}}))
    assert wait_for(lambda: _connects_with_tls(kit, reactor, "127.0.0.5"), timeout=5)
    assert wait_for(lambda: _silently_closed(raw_socket(reactor, "127.0.0.3")), timeout=5)


def _json_store(config_file, toml):
    # ConfigStore reads .cfg and .toml; write the tree as TOML through the dict loader's equivalent.
    _rewrite(config_file, toml, json.loads(config_file.read_text()))
    return ConfigStore([toml], check_interval=0.1, use_environment=False)


def _rewrite(config_file, toml, tree) -> None:
    config_file.write_text(json.dumps(tree))
    lines: list[str] = []

    def walk(prefix: list[str], node: dict) -> None:
        scalars = {k: v for k, v in node.items() if not isinstance(v, dict)}
        if scalars:
            lines.append("[" + ".".join(json.dumps(p) for p in prefix) + "]")
            lines.extend(f"{json.dumps(k)} = {json.dumps(str(v))}" for k, v in scalars.items())
        for key, value in node.items():
            if isinstance(value, dict):
                walk([*prefix, key], value)

    walk([], tree)
    temporary = toml.with_suffix(".tmp")
    temporary.write_text("\n".join(lines) + "\n")
    os.replace(temporary, toml)  # atomically, as the configuration docs ask


def _connects_with_tls(kit, reactor, source) -> bool:
    """Whether the server waits for the rest of a ClientHello from ``source`` (a refused one is closed at once)."""
    sock = raw_socket(reactor, source)
    sock.sendall(CLIENT_HELLO_START)
    _, closed = read_until_closed(sock, timeout=0.5)
    sock.close()
    return not closed


def test_failed_handshakes_get_an_address_banned_for_a_while(kit, serve):
    reactor = serve({"DIRAC": {"Security": {"Server": {"AutoBan": {"MaxFailures": 5, "Duration": 2}}}}})
    for _ in range(5):
        sock = _source_or_skip(reactor, "127.0.0.3")
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")  # not TLS: a failed handshake
        read_until_closed(sock, timeout=3)
        sock.close()
    assert wait_for(lambda: "127.0.0.3" in reactor.guard.temporary_bans())
    assert _silently_closed(raw_socket(reactor, "127.0.0.3"))
    still_serves(kit, reactor)  # 127.0.0.1 is another machine: unaffected
    # The ban expires (Duration 2 s, on the guard's real clock: the reactor builds its ConnectionGuard itself).
    assert wait_for(lambda: "127.0.0.3" not in reactor.guard.temporary_bans(), timeout=10)
    assert _connects_with_tls(kit, reactor, "127.0.0.3")


def test_loopback_is_exempt_from_address_bans_only_by_configuration(kit, serve):
    """Garbage from 127.0.0.1 bans it like any address; refusals of an authenticated caller never do (they suspend
    the identity: test_abuse_charging.py)."""
    reactor = serve({"DIRAC": {"Security": {"Server": {"AutoBan": {"MaxFailures": 3}}}}})
    with kit.client(reactor.url("Sec/Probe")) as client:
        for _ in range(2):
            assert client.secret()["Errno"] == 1111
    for _ in range(3):
        sock = raw_socket(reactor, "127.0.0.1")
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")  # not TLS
        read_until_closed(sock, timeout=3)
        sock.close()
    assert wait_for(lambda: "127.0.0.1" in reactor.guard.temporary_bans())
    assert _silently_closed(raw_socket(reactor, "127.0.0.1"))

    exempt = serve({"DIRAC": {"Security": {"Server": {"AutoBan": {"MaxFailures": 3, "Exempt": "127.0.0.0/8"}}}}})
    for _ in range(6):
        sock = raw_socket(exempt, "127.0.0.1")
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        read_until_closed(sock, timeout=3)
        sock.close()
    with kit.client(exempt.url("Sec/Probe")) as client:
        assert client.who("still")["OK"]
    assert exempt.guard.temporary_bans() == {}


def test_connections_per_address_and_in_total(kit, serve):
    reactor = serve({"DIRAC": {"Security": {"Server": {"MaxConnectionsPerAddress": 3, "MaxConnections": 6}}}})
    held = [_source_or_skip(reactor, "127.0.0.5") for _ in range(3)]
    try:
        assert _silently_closed(raw_socket(reactor, "127.0.0.5"))  # a fourth from the same address
        held += [raw_socket(reactor, "127.0.0.6") for _ in range(3)]
        assert wait_for(lambda: reactor.guard.open_connections == 6)
        assert _silently_closed(raw_socket(reactor, "127.0.0.7"))  # the server is full
    finally:
        for sock in held:
            sock.close()
    assert wait_for(lambda: reactor.guard.open_connections == 0)
    still_serves(kit, reactor)


def test_slowloris_crowd_cannot_stop_a_well_behaved_client(kit, serve):
    """300 sockets from two addresses trickle a ClientHello or a proposal; a good client is served at once."""
    reactor = serve(
        {"DIRAC": {"Security": {"Server": {"AutoBan": {"Enabled": "no"}}}}},
        handshake_timeout=1.5,
        read_timeout=1.5,
        max_threads=2,
    )
    crowd = [_source_or_skip(reactor, "127.0.0.8") for _ in range(150)]
    crowd += [raw_socket(reactor, "127.0.0.9") for _ in range(150)]
    quiet_tls = [tls_stream(reactor, kit.tls_for(kit.user.proxy_file)) for _ in range(20)]
    trickled = frame(PROPOSAL % b"who")
    try:
        for stream in quiet_tls:  # handshaken, then a proposal that never completes
            stream.send_all(trickled[:5])
        for index in range(8):  # one byte per socket per round, bounded
            for sock in crowd:
                with contextlib.suppress(OSError):  # dropped already: that is the server defending itself
                    sock.send(CLIENT_HELLO_START[index : index + 1])
            still_serves(kit, reactor)
            if index == 0:
                # Served while the crowd still holds its connections (dropped only at their 1.5 s deadlines): the
                # good client waited for none of them. The order of events, not a speed.
                assert reactor.guard.open_connections > 1
        # Trickling never extends a deadline: the whole crowd is dropped by the handshake and read timeouts.
        assert wait_for(lambda: reactor.guard.open_connections <= 1, timeout=6)
    finally:
        for sock in crowd:
            sock.close()
        for stream in quiet_tls:
            stream.close()
    still_serves(kit, reactor)


def test_many_calls_on_a_connection_are_capped_and_the_client_carries_on(kit, serve):
    reactor = serve({"DIRAC": {"Security": {"Server": {"MaxCallsPerConnection": 5}}}})
    with kit.client(reactor.url("Sec/Probe")) as client:
        peers = {tuple(client.who(str(i))["Value"]["peer"]) for i in range(23)}
    assert len(peers) >= 5  # the server closed each connection after five calls; no call failed


def test_limited_proxies_are_refused_where_configured(kit, serve):
    open_reactor = serve()
    with kit.client(open_reactor.url("Sec/Probe"), proxy=kit.limited_proxy) as client:
        assert client.who("limited")["OK"]  # by default a limited proxy authenticates
    strict = serve({"DIRAC": {"Security": {"Server": {"RefuseLimitedProxies": "yes"}}}})
    with kit.client(strict.url("Sec/Probe"), proxy=kit.limited_proxy) as client:
        refused = client.who("limited")
    assert refused["Errno"] == 1111 and "limited proxies are not accepted" in refused["Message"]
    still_serves(kit, strict)


def test_a_reload_that_bans_an_address_also_ends_its_kept_alive_connections(kit, serve, tmp_path):
    config_file = tmp_path / "live.json"
    config_file.write_text(json.dumps(kit.config_dict({"Registry": {"BannedIPs": "192.0.2.1"}})))
    toml = tmp_path / "live.toml"
    store = _json_store(config_file, toml)
    reactor = serve(store=store)
    with kit.client(reactor.url("Sec/Probe")) as client:
        assert client.who("before")["OK"]  # this connection is now pooled and kept alive
        _rewrite(config_file, toml, kit.config_dict({"Registry": {"BannedIPs": "127.0.0.1"}}))
        store.refresh(force=True)  # what the store's watcher does every check interval, done now
        refused = client.who("after")
    # Without the per-snapshot check, the kept-alive connection would have served this call.
    assert refused["OK"] is False, refused


def test_a_reload_that_refuses_limited_proxies_applies_to_kept_alive_connections(kit, serve, tmp_path):
    config_file = tmp_path / "live.json"
    config_file.write_text(json.dumps(kit.config_dict({})))
    toml = tmp_path / "live.toml"
    store = _json_store(config_file, toml)
    reactor = serve(store=store)
    with kit.client(reactor.url("Sec/Probe"), proxy=kit.limited_proxy) as client:
        assert client.who("before")["OK"]  # limited proxies are accepted by default; the connection stays pooled
        strict = {"DIRAC": {"Security": {"Server": {"RefuseLimitedProxies": "yes"}}}}
        _rewrite(config_file, toml, kit.config_dict(strict))
        store.refresh(force=True)  # what the store's watcher does every check interval, done now
        refused = client.who("after")
    assert refused["OK"] is False and "limited proxies are not accepted" in refused["Message"], refused
