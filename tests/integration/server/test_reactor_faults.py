"""Bad input, slow and vanishing clients, overload, bans and shutdown: each fault gets a clear answer (or a silent
close) and the server then still serves a good client."""

from __future__ import annotations

import socket
import time

import pytest
from support.server_kit import REUSE, EchoHandler, RawClient, connect, raw_socket, run_in_thread, service
from support.waiting import wait_for
from support.wire import frame, read_until_closed

PROPOSAL = b'{"OK": true, "Value": [["Bench/Echo", "None", "unknown"], ["RPC", "%s"], "", "9.1.22"]}'


def _still_serves(reactor, creds) -> None:
    client = RawClient(connect(reactor, "Bench/Echo", creds))
    assert client.call("echo", "still here") == {"OK": True, "Value": "still here"}
    client.close()


def _exchange(reactor, *frames: bytes) -> tuple[bytes, bool]:
    sock = raw_socket(reactor, "Bench/Echo")
    for data in frames:
        sock.sendall(data)
    try:
        return read_until_closed(sock, timeout=3)
    finally:
        sock.close()


@pytest.mark.parametrize(
    ("method", "arguments", "message"),
    [
        ("add", b'["2", 3]', "Type mismatch in parameter 0 (starting with param 0)"),
        ("echo", b'["a", "b"]', "Function echo takes at most 1 arguments, 2 given"),
        ("echo", b"[]", "Function echo expects at least 1 arguments"),
        ("echo", b'{"a": 1}', "Error in parameter check: 0"),
    ],
)
def test_bad_calls_get_dirac_messages(creds, serve, method, arguments, message):
    # An unknown method is refused at the proposal instead: tests/security/test_inflight.py.
    reactor = serve([service(creds, "dip")])
    received, closed = _exchange(
        reactor, frame(PROPOSAL % method.encode()), frame(b'{"OK": true, "Value": %b}' % arguments)
    )
    assert received.startswith(b'27:{"OK": true, "Value": null}')
    assert message.encode() in received and b"CallStack" not in received
    assert closed
    _still_serves(reactor, creds)


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        ([b'{"OK": true, "Value": [["Bench/Nope", "None", "unknown"], ["RPC", "echo"], "", "9.1.22"]}'], None),
        ([b'{"OK": true, "Value": [["Bench/Echo", "None", "unknown"], ["Foo", "echo"], "", "9.1.22"]}'], None),
        ([b'{"OK": true, "Value": "junk"}'], b"Invalid action proposal"),
        ([b"[1, 2, 3]"], b"Invalid action proposal"),
        ([b"{abc}"], b"Invalid action proposal"),
    ],
    ids=["unknown-service", "unknown-action", "proposal-string", "proposal-bare-list", "malformed-json"],
)
def test_bad_proposals_are_refused_and_closed(creds, serve, frames, message):
    reactor = serve([service(creds, "dip")])
    received, closed = _exchange(reactor, *(frame(f) for f in frames))
    expected = {
        "unknown-service": b'"Message": "Bench/Nope is not up in this server"',
        "unknown-action": b'"Message": "Foo is not a known action type"',
    }
    if message is None:
        assert any(text in received for text in expected.values()), received
    else:
        assert message in received
    assert b'"OK": false' in received and b"CallStack" not in received
    assert closed
    _still_serves(reactor, creds)


@pytest.mark.parametrize(
    "garbage",
    [b"abcdefghijklmnopqrstuvwxyz", b"999999999:" + b"A" * 300, b"70000:" + b"A" * 100],
    ids=["no-colon", "huge-declared-length", "oversized-proposal"],
)
def test_broken_frames_close_the_connection(creds, serve, garbage):
    reactor = serve([service(creds, "dip")])
    received, closed = _exchange(reactor, garbage)
    assert received == b"" and closed  # DIRAC keeps such connections open; we drop them at once
    _still_serves(reactor, creds)


def test_handler_exception_gives_a_reference_and_no_traceback(creds, serve):
    reactor = serve([service(creds, "dip")])
    received, closed = _exchange(reactor, frame(PROPOSAL % b"boom"), frame(b'{"OK": true, "Value": []}'))
    assert b"Server error while serving boom (reference " in received
    assert b"internal detail" not in received and b"Traceback" not in received and closed
    _still_serves(reactor, creds)


def _still_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


def test_a_silent_client_costs_no_worker(creds, serve):
    reactor = serve([service(creds, "dips", max_threads=1)], read_timeout=3.0, handshake_timeout=3.0)
    silent = raw_socket(reactor, "Bench/Echo")  # TCP only: never starts TLS
    client = RawClient(connect(reactor, "Bench/Echo", creds))
    quiet_tls = connect(reactor, "Bench/Echo", creds)  # TLS done, never proposes
    _still_serves(reactor, creds)
    # Served while both silent peers are still connected (they are dropped only at their 3 s deadlines): neither
    # held the only worker. This is about the order of events, not about speed.
    assert _still_open(silent)
    client.close()
    _, closed = read_until_closed(silent, timeout=10)
    assert closed  # dropped at the handshake deadline
    quiet_tls.settimeout(10)
    assert quiet_tls.recv(10) == b""  # dropped at the read deadline
    silent.close()
    quiet_tls.close()


def test_slowloris_sockets_do_not_block_a_good_client(creds, serve):
    reactor = serve([service(creds, "dip", max_threads=1)], read_timeout=1.5)
    partial = frame(PROPOSAL % b"echo")
    slow = [raw_socket(reactor, "Bench/Echo") for _ in range(50)]
    try:
        end = time.monotonic() + 1.0
        for index in range(100):  # trickle one byte per socket every ~10 ms for a second
            for sock in slow:
                sock.send(partial[index : index + 1])
            # Fault injection: the pace of a slowloris peer (a byte per socket every ~10 ms), not a wait for anything.
            _still_serves(reactor, creds) if index % 25 == 0 else time.sleep(0.01)
            if time.monotonic() > end:
                break
        # Trickling never extends the deadline: every slow socket is dropped by read_timeout.
        for sock in slow:
            _, closed = read_until_closed(sock, timeout=10)
            assert closed
    finally:
        for sock in slow:
            sock.close()
    _still_serves(reactor, creds)


def test_a_client_that_vanishes_mid_call(creds, serve):
    EchoHandler.seen_leaves.clear()
    EchoHandler.waiting_for_leave.clear()
    reactor = serve([service(creds, "dip", max_threads=1)])
    sock = raw_socket(reactor, "Bench/Echo")
    sock.sendall(frame(PROPOSAL % b"wait_for_leave"))
    sock.settimeout(5)
    assert sock.recv(100) == b'27:{"OK": true, "Value": null}'
    sock.sendall(frame(b'{"OK": true, "Value": [5]}'))
    assert EchoHandler.waiting_for_leave.wait(10)  # the handler runs
    sock.close()  # the handler sees caller_connected() turn False and stops early
    wait_for(lambda: EchoHandler.seen_leaves)
    assert EchoHandler.seen_leaves == [True]
    _still_serves(reactor, creds)
    # Vanishing between proposal and arguments costs nothing either.
    sock = raw_socket(reactor, "Bench/Echo")
    sock.sendall(frame(PROPOSAL % b"echo"))
    assert sock.recv(100) == b'27:{"OK": true, "Value": null}'
    sock.sendall(b'30:{"OK": tr')
    sock.close()
    _still_serves(reactor, creds)


def _held_call(reactor, creds):
    client = RawClient(connect(reactor, "Bench/Echo", creds))
    try:
        return client.call("held")
    finally:
        client.close()


def test_overload_is_answered_at_once(creds, serve):
    EchoHandler.gate.reset()
    reactor = serve([service(creds, "dip", max_threads=1, max_waiting_petitions=1)])
    try:
        first = run_in_thread(lambda: _held_call(reactor, creds))
        EchoHandler.gate.wait_entered(1)  # the only worker is held
        second = run_in_thread(lambda: _held_call(reactor, creds))
        wait_for(lambda: reactor._pools["Bench/Echo"].waiting == 1)  # the only queue slot is taken
        # Refused at once rather than after a worker frees up: none does until the gate opens, after this answer
        # (a server that queued the call would leave it waiting until the client's 10 s timeout).
        client = RawClient(connect(reactor, "Bench/Echo", creds))
        third = client.call("held")
        client.close()
    finally:
        EchoHandler.gate.open()
    assert third["Errno"] == 1601 and third["Message"].startswith("Service overloaded ( 1601 : ")
    for thread, box in (first, second):
        thread.join(10)
        assert box["result"] == {"OK": True, "Value": "released"}
    _still_serves(reactor, creds)


def test_banned_ip_is_closed_before_tls(creds, serve):
    reactor = serve([service(creds, "dips")])
    try:
        banned = raw_socket(reactor, "Bench/Echo", source="127.0.0.2")
    except OSError as exc:
        pytest.skip(f"cannot bind 127.0.0.2 here: {exc}")
    banned.sendall(b"\x16\x03\x01\x00\x05hello")  # the start of a ClientHello: never answered
    received, closed = read_until_closed(banned, timeout=3)
    banned.close()
    assert received == b"" and closed
    _still_serves(reactor, creds)


def test_graceful_stop_drains_an_in_flight_call(creds, serve):
    reactor = serve([service(creds, "dip")])
    idle = RawClient(connect(reactor, "Bench/Echo", creds), offer=REUSE)
    assert idle.call("echo", "idle")["OK"]

    EchoHandler.gate.reset()
    thread, box = run_in_thread(lambda: _held_call(reactor, creds))
    EchoHandler.gate.wait_entered(1)
    stopper, _ = run_in_thread(lambda: reactor.stop(timeout=60))
    try:
        _, closed = read_until_closed(idle.stream, timeout=10)
        assert closed  # stopping has begun: the idle reused connection was closed, the held call still runs
        assert stopper.is_alive()  # stop waits for the call in flight
    finally:
        EchoHandler.gate.open()
    thread.join(10)
    assert box["result"] == {"OK": True, "Value": "released"}
    stopper.join(10)  # far less than its 60 s timeout: stop returns once the call has drained
    assert not stopper.is_alive()
    idle.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", reactor.ports["Bench/Echo"]), timeout=2).close()
