"""Memory a peer without a registered identity can make the server hold (issue 12, item 5): an unexported method is
refused before its arguments, and bytes in flight are bounded per address and per service. Over each back end."""

from __future__ import annotations

import contextlib

import pytest
from support.security_kit import PROPOSAL, exchange, tls_stream
from support.waiting import wait_for
from support.wire import frame

from rpcframework.errors import RPCFrameworkError

pytestmark = pytest.mark.timeout(90)

BACKENDS = ["pyopenssl", pytest.param("m2crypto", marks=pytest.mark.m2crypto)]
ACK = b'27:{"OK": true, "Value": null}'
MIB = 1024 * 1024


def _stranger(kit, reactor):
    """A TLS connection with a certificate the CA signed but the registry does not know."""
    return tls_stream(reactor, kit.tls_for(kit.stranger.cert_file, kit.stranger.key_file))


def _accepted(stream, method: bytes = b"open") -> None:
    """Propose ``method`` and read the ack (``open`` is allowed to ``all``, so to an unregistered certificate)."""
    stream.send_all(frame(PROPOSAL % method))
    stream.settimeout(5)
    received = b""
    for _ in range(10):
        received += stream.recv(4096)
        if len(received) >= len(ACK):
            break
    assert received == ACK


def _answer(stream) -> tuple[bytes, bool]:
    """What the server sends before it closes; a reset (the server closed with our bytes unread) is a close."""
    try:
        return exchange(stream, timeout=5)
    except RPCFrameworkError:
        return b"", True


def _send_quietly(stream, data: bytes) -> None:
    with contextlib.suppress(RPCFrameworkError, OSError):  # the server may close while we send: that is the point
        stream.send_all(data)


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_unexported_method_is_refused_before_its_arguments(kit, serve, backend):
    reactor = serve(backend=backend)
    received, closed = exchange(_stranger(kit, reactor), frame(PROPOSAL % b"nosuch"), timeout=5)
    assert closed and b'"Unknown method nosuch"' in received and ACK not in received
    transfer = (
        b'{"OK": true, "Value": [["Sec/Probe", "None", "unknown"], ["FileTransfer", "BulkToClient"], "", "9.1.22"]}'
    )
    received, closed = exchange(_stranger(kit, reactor), frame(transfer), timeout=5)
    assert closed and b"Service can't transfer files bulkToClient" in received and ACK not in received
    # A registered caller learns the methods it may call, as before.
    with kit.client(reactor.url("Sec/Probe")) as client:
        assert client.wh("x")["Message"] == "Unknown method wh; did you mean who?"


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_unregistered_certificate_cannot_make_the_server_hold_argument_frames(kit, serve, backend):
    """The issue's attack: an unregistered certificate sends 63 MiB argument frames on 10 connections at once (it
    took RSS from 229 MB to 1.45 GB). Each connection is answered and closed as soon as the frame's header says how
    much it will hold, before its payload is kept."""
    reactor = serve(backend=backend)
    attackers = [_stranger(kit, reactor) for _ in range(10)]
    try:
        for stream in attackers:
            _accepted(stream)
        for stream in attackers:
            _send_quietly(stream, b"%d:" % (63 * MIB) + b"[" + b"0," * (MIB // 2))
        answers = [_answer(stream) for stream in attackers]
        assert all(closed for _, closed in answers), "the server kept reading 63 MiB frames of an unregistered peer"
        # The refusal reaches the client unless the close resets the connection first (our bytes still unread).
        assert all(
            b'"Errno": 1601' in received and b"too many bytes in flight" in received
            for received, _ in answers
            if received
        )
    finally:
        for stream in attackers:
            stream.close()
    assert wait_for(lambda: reactor.guard.in_flight.held() == ({}, {}))
    # A registered user's arguments are its own business (bounded by MaxMessageSize only): 17 MiB are served.
    with kit.client(reactor.url("Sec/Probe")) as client:
        assert len(client.who("x" * (17 * MIB))["Value"]["nonce"]) == 17 * MIB


@pytest.mark.parametrize("backend", BACKENDS)
def test_bytes_in_flight_are_bounded_per_address_and_per_service(kit, serve, backend):
    server = {"MaxBytesInFlightPerAddress": 4 * MIB, "MaxBytesInFlightPerService": 6 * MIB}
    reactor = serve({"DIRAC": {"Security": {"Server": server}}}, backend=backend)
    first, second, third = (_stranger(kit, reactor) for _ in range(3))
    try:
        _accepted(first)
        _send_quietly(first, b"%d:[" % (3 * MIB))  # a 3 MiB frame started: held, within both limits
        assert wait_for(lambda: reactor.guard.in_flight.held() == ({"127.0.0.1": 3 * MIB}, {"Sec/Probe": 3 * MIB}))
        _accepted(second)
        _send_quietly(second, b"%d:[" % (2 * MIB))  # 5 MiB from one address: over 4 MiB
        received, closed = _answer(second)
        assert closed and b"(address 127.0.0.1: limit" in received
        # A proposal frame that is not authorized yet counts too (it never counts for a service).
        _send_quietly(third, b"%d:" % (60 * 1024) + b"x" * 20_000)
        assert wait_for(lambda: reactor.guard.in_flight.held()[0] == {"127.0.0.1": 3 * MIB + 60 * 1024})
        third.close()
        assert wait_for(lambda: reactor.guard.in_flight.held()[0] == {"127.0.0.1": 3 * MIB})
    finally:
        for stream in (first, second, third):
            stream.close()
    assert wait_for(lambda: reactor.guard.in_flight.held() == ({}, {}))
    per_service = serve({"DIRAC": {"Security": {"Server": {"MaxBytesInFlightPerService": 6 * MIB}}}}, backend=backend)
    first, second = _stranger(kit, per_service), _stranger(kit, per_service)
    try:
        for stream in (first, second):
            _accepted(stream)
        _send_quietly(first, b"%d:[" % (4 * MIB))
        assert wait_for(lambda: per_service.guard.in_flight.held()[1] == {"Sec/Probe": 4 * MIB})
        _send_quietly(second, b"%d:[" % (4 * MIB))
        received, closed = _answer(second)
        assert closed and b"(service Sec/Probe: limit" in received
    finally:
        first.close()
        second.close()
