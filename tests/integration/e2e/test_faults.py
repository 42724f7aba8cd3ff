"""Bad input and faults, end to end: each gives the caller a clear error, and the service then still serves others."""

from __future__ import annotations

import errno
import time

import pytest
from support.e2e_kit import SERVICE, CountingHandler, raw_stream
from support.waiting import wait_for
from support.wire import frame, read_until_closed

from rpcframework.server import ServiceReactor

PROPOSAL = b'{"OK": true, "Value": [["Demo/Echo", "None", "unknown"], ["RPC", "%s"], "", "9.1.22"]}'
ACK = b'27:{"OK": true, "Value": null}'


def still_serves(creds, reactor: ServiceReactor) -> None:
    """A new, well-behaved client gets its answer (within its own 5 s deadline)."""
    with creds.client(reactor.url(SERVICE), timeout=5) as client:
        assert client.echo("still here")["Value"] == "still here"


@pytest.mark.parametrize(
    ("method", "args", "message"),
    [
        ("nosuch", (), "Unknown method nosuch"),
        ("add", ("2", 3), "Type mismatch in parameter 0 (starting with param 0) Received <class 'str'>"),
        ("echo", ("a", "b"), "Function echo takes at most 1 arguments, 2 given"),
        ("echo", (), "Function echo expects at least 1 arguments"),
    ],
    ids=["unknown-method", "wrong-type", "too-many-arguments", "too-few-arguments"],
)
def test_bad_calls_get_dirac_messages(creds, cluster, method, args, message):
    (reactor,) = cluster()
    with creds.client(reactor.url(SERVICE)) as client:
        result = client.executeRPC(method, *args)
        assert not result["OK"] and result["Message"].startswith(message), result
        assert "Traceback" not in result["Message"]
        assert CountingHandler.executions[method] == 0  # refused before the handler ran
        assert client.echo("next")["Value"] == "next"  # the same client and connection go on
    still_serves(creds, reactor)


def test_unknown_service_name(creds, cluster):
    (reactor,) = cluster()
    url = reactor.url(SERVICE).replace("Demo/Echo", "Demo/Nope")
    with creds.client(url) as client:
        result = client.echo("x")
    assert not result["OK"] and "Demo/Nope is not up in this server" in result["Message"], result
    still_serves(creds, reactor)


@pytest.mark.parametrize(
    ("proposal", "message"),
    [
        (
            b'{"OK": true, "Value": [["Demo/Echo", "None", "unknown"], ["Foo", "echo"], "", "9.1.22"]}',
            b"Foo is not a known action type",
        ),
        (b'{"OK": true, "Value": "junk"}', b"Invalid action proposal"),
        (b'{"OK": true, "Value": {"service": "Demo/Echo"}}', b"Invalid action proposal"),
    ],
    ids=["unknown-action-type", "proposal-string", "proposal-dict"],
)
def test_bad_proposals_from_a_raw_client(creds, cluster, proposal, message):
    (reactor,) = cluster()
    stream = raw_stream(reactor.url(SERVICE), creds)
    try:
        stream.send_all(frame(proposal))
        received, closed = read_until_closed(stream)
    finally:
        stream.close()
    assert b'"OK": false' in received and message in received, received
    assert closed
    still_serves(creds, reactor)


def test_a_client_that_sends_nothing_is_dropped_without_holding_a_worker(creds, cluster):
    (reactor,) = cluster(max_threads=1, read_timeout=3.0, handshake_timeout=3.0)
    silent = raw_stream(reactor.url(SERVICE), creds)  # TLS done, then not a byte
    try:
        still_serves(creds, reactor)  # meanwhile, with a single worker
        # Served while the silent client was still connected (it is dropped only at its 3 s read deadline): it
        # held no worker. The order of events, not a speed.
        assert not read_until_closed(silent, timeout=0.05)[1]
        received, closed = read_until_closed(silent, timeout=10)
        assert closed and received == b""  # dropped at the read deadline
    finally:
        silent.close()
    still_serves(creds, reactor)


def test_a_client_that_vanishes_mid_call_frees_the_worker(creds, cluster):
    (reactor,) = cluster(max_threads=1)
    stream = raw_stream(reactor.url(SERVICE), creds)
    try:
        stream.send_all(frame(PROPOSAL % b"slow"))
        stream.settimeout(5)
        assert stream.recv(100) == ACK
        stream.send_all(frame(b'{"OK": true, "Value": [20]}'))
        wait_for(lambda: CountingHandler.executions["slow"])  # the handler runs
    finally:
        stream.close()
    # slow(20) notices its caller left and returns at once: the only worker serves the next caller.
    still_serves(creds, reactor)
    assert CountingHandler.executions["slow"] == 1


def test_a_deadline_that_expires_in_a_slow_handler(creds, cluster):
    (reactor,) = cluster(max_threads=1)
    with creds.client(reactor.url(SERVICE)) as client:
        started = time.monotonic()
        result = client.slow(10, timeout=1)
        elapsed = time.monotonic() - started
        assert not result["OK"] and result["Errno"] == errno.ETIMEDOUT, result
        assert "deadline" in result["Message"] and "slow" in result["Message"]
        # A deadline test: the call waited for its 1 s deadline, not for the 10 s handler (generous: shared machine).
        assert 0.9 <= elapsed < 8, elapsed
        assert client.add(1, 1)["Value"] == 2  # the client recovers (a fresh connection) ...
    still_serves(creds, reactor)  # ... and so does the service: its one worker is free again
    assert CountingHandler.executions["slow"] == 1  # never retried after the arguments went out
