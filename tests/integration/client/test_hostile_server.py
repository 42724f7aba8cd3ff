"""Our client against a hostile server (the kit: ``ExtensionPeer`` + ``Behaviour`` in ``conftest.py``), over real TLS
on both back ends and plain TCP.

* 13.5: a frame sent on an idle pooled connection (after a result, before the next call) is never taken as the next
  call's answer: the connection is dropped and the call goes on a fresh one.
* 13.8: keys a server adds to its replies (``CallStack``, ``ExecInfo``, anything) never reach the caller, and an
  ``Errno`` that is not an integer is normalised.
* 12.9: an overload suggestion the client cannot honour (too long, past the deadline) ends the call at once.
"""

from __future__ import annotations

from typing import Any

import pytest
from support.clock import age_pool
from support.waiting import wait_for
from support.wire import wait_delivered

from rpcframework.client import Client, Retry
from rpcframework.client.rpcclient import RPCClient
from rpcframework.protocol import Extensions, encode_frame
from rpcframework.protocol.messages import overload_error
from rpcframework.returnvalues import EOVERLOAD, S_ERROR, DReturn

pytestmark = pytest.mark.timeout(60)

BACKENDS = ["pyopenssl", pytest.param("m2crypto", marks=pytest.mark.m2crypto), "plain"]

#: A complete forged exchange: an ack and a result, as the next call would expect them.
FORGED_EXCHANGE = encode_frame(b'{"OK": true, "Value": null}') + encode_frame(b'{"OK": true, "Value": "forged"}')
#: A lone result frame.
FORGED_RESULT = encode_frame(b'{"OK": true, "Value": "forged"}')


@pytest.fixture(params=BACKENDS)
def hostile(request: pytest.FixtureRequest, servers: Any, creds: Any) -> tuple[Any, dict[str, Any]]:
    """A scripted hostile server and client options, for each back end (the client uses the same one)."""
    name = request.param
    if name == "plain":
        return servers("ext", "plain"), {"config": creds.config()}
    return servers("ext", name, creds.server_tls()), creds.client_options(backend=name)


# -- 13.5: a reply nobody asked for ------------------------------------------------------------------------------


@pytest.mark.parametrize("pipelined", [False, True], ids=["two-round-trips", "pipelined"])
@pytest.mark.parametrize("when", ["with-the-result", "while-idle"])
@pytest.mark.parametrize("forged", [FORGED_EXCHANGE, FORGED_RESULT], ids=["ack+result", "result"])
def test_an_unsolicited_frame_on_an_idle_connection_is_never_the_next_answer(
    hostile: tuple[Any, dict[str, Any]], pipelined: bool, when: str, forged: bytes
) -> None:
    peer, options = hostile
    if pipelined:
        peer.behaviour.extensions = Extensions(idle_timeout=60.0)  # announced: the client pipelines its calls
    peer.behaviour.after_result = forged
    peer.behaviour.after_result_delay = 0.05 if when == "while-idle" else 0.0
    with Client(peer.url(), **options) as client:
        assert client.echo("one")["Value"] == "one"
        wait_for(lambda: peer.unsolicited_sent == 1)
        # The forged bytes are in the client's socket before its next call.
        wait_delivered(peer.port, peer.client_ports())
        peer.behaviour.after_result = b""
        second = client.echo("two")
        assert second["OK"] and second["Value"] == "two", second
        assert client.echo("three")["Value"] == "three"
    assert peer.connections == 2  # the poisoned connection was dropped, its successor kept
    assert peer.executions == 3


def test_keepalive_pongs_on_an_idle_connection_are_not_a_protocol_error(servers: Any, creds: Any) -> None:
    from rpcframework.client.pool import PoolSettings

    peer = servers("ext", "pyopenssl", creds.server_tls())
    pool = PoolSettings(keepalive_lapse=0.05, maintenance_interval=0.0, idle_timeout=30.0)
    with RPCClient(peer.url(), pool=pool, **creds.client_options()) as rpc:
        assert rpc.echo("a")["Value"] == "a"
        age_pool(rpc.pool, 0.1)  # idle past keepalive_lapse
        rpc.maintain()
        wait_for(lambda: peer.pings >= 1)
        wait_delivered(peer.port, peer.client_ports())  # the pong is in the client's socket
        assert rpc.echo("b")["Value"] == "b"
    assert peer.connections == 1  # the pong was read while idle, and the connection kept


# -- 13.8: foreign keys and odd Errno values in replies ---------------------------------------------------------


def _raw(envelope: str) -> bytes:
    return encode_frame(envelope.encode())


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            '{"OK": false, "Errno": 5, "Message": "m", "CallStack": ["/srv/app/secret.py"], "ExecInfo": [1, 2]}',
            {"OK": False, "Errno": 5, "Message": "m"},
        ),
        (
            '{"OK": true, "Value": 1, "CallStack": ["x"], "ExecInfo": "y", "Injected": {"a": 1}}',
            {"OK": True, "Value": 1},
        ),
        ('{"OK": false, "Errno": "1111", "Message": "m"}', {"OK": False, "Errno": 1111, "Message": "m"}),
        ('{"OK": false, "Errno": "EPERM", "Message": "m"}', {"OK": False, "Errno": 0, "Message": "m"}),
        ('{"OK": false, "Errno": 2.0, "Message": "m"}', {"OK": False, "Errno": 2, "Message": "m"}),
        ('{"OK": false, "Errno": 2.5, "Message": "m"}', {"OK": False, "Errno": 0, "Message": "m"}),
        ('{"OK": false, "Errno": true, "Message": "m"}', {"OK": False, "Errno": 0, "Message": "m"}),
        ('{"OK": false, "Errno": [1], "Message": "m"}', {"OK": False, "Errno": 0, "Message": "m"}),
        (
            '{"OK": false, "Errno": 123456789012345678901234567890, "Message": "m"}',
            {"OK": False, "Errno": 0, "Message": "m"},
        ),
        ('{"OK": false, "Message": "m"}', {"OK": False, "Errno": 0, "Message": "m"}),
    ],
    ids=[
        "callstack",
        "ok-extras",
        "str-errno",
        "name-errno",
        "float-errno",
        "fraction",
        "bool",
        "list",
        "huge",
        "none",
    ],
)
def test_foreign_keys_and_odd_errno_never_reach_the_caller(
    hostile: tuple[Any, dict[str, Any]], raw: str, expected: dict[str, Any]
) -> None:
    peer, options = hostile
    peer.behaviour.raw_result = _raw(raw)
    with Client(peer.url(), **options) as client:
        result = dict(client.echo("x"))
    stub = result.pop("rpcStub")
    assert result == expected
    assert list(result) == list(expected)  # DIRAC's key order
    assert stub[1] == "echo"
    assert peer.executions == 1  # and nothing was retried


@pytest.mark.parametrize("backend", ["pyopenssl", pytest.param("m2crypto", marks=pytest.mark.m2crypto)])
def test_a_refusal_with_a_server_stack_reaches_the_caller_without_it(servers: Any, creds: Any, backend: str) -> None:
    # What a DIRAC service sends for an unauthorized call (docs: reference/dirac-wire/error-replies.txt).
    peer = servers("ext", backend, creds.server_tls())
    refusal: Any = {**S_ERROR(1111, "Unauthorized query"), "CallStack": ["  File /srv/Service.py, line 446"]}
    peer.behaviour.refuse = refusal
    peer.behaviour.extensions = None  # a DIRAC service: the refusal goes out as the peer wrote it
    with Client(peer.url(), **creds.client_options(backend=backend)) as client:
        result = dict(client.echo("x"))
    result.pop("rpcStub")
    assert result == {"OK": False, "Errno": 1111, "Message": "Unauthorized query ( 1111 : Unauthorized query)"}


# -- 12.9: overload suggestions the client cannot honour ----------------------------------------------------------


def _overloaded(retry_after: float) -> Any:
    def handler(method: str, args: list[Any], kwargs: dict[str, Any]) -> DReturn:
        return overload_error(S_ERROR(EOVERLOAD, "queue full"), retry_after)

    return handler


@pytest.mark.parametrize(("retry_after", "timeout"), [(1e6, 30.0), (3.0, 1.0)], ids=["huge", "past-the-deadline"])
def test_an_overload_delay_that_cannot_be_honoured_ends_the_call_at_once(
    servers: Any, creds: Any, retry_after: float, timeout: float
) -> None:
    peer = servers("ext", "pyopenssl", creds.server_tls())
    peer.behaviour.handler = _overloaded(retry_after)
    pauses: list[float] = []
    options = creds.client_options(retries=Retry(total=5, backoff_max=10.0), timeout=timeout)
    with RPCClient(peer.url(), sleep=pauses.append, **options) as rpc:
        result = rpc.echo("x")
    assert result["Errno"] == EOVERLOAD and "RetryAfter" not in result, result
    assert pauses == []  # never slept: a hostile server cannot stall the client with its suggestion
    assert peer.executions == 1


@pytest.mark.parametrize("backend", ["pyopenssl", "plain"])
@pytest.mark.parametrize("pipelined", [False, True], ids=["two-round-trips", "pipelined"])
@pytest.mark.parametrize("when", ["with-the-result", "while-idle"])
@pytest.mark.parametrize("forged", [FORGED_EXCHANGE, FORGED_RESULT], ids=["ack+result", "result"])
def test_the_async_client_never_takes_an_unsolicited_frame_as_the_next_answer(
    servers: Any, creds: Any, backend: str, pipelined: bool, when: str, forged: bytes
) -> None:
    """Found by the attack run on the asyncio client: frames sent in the same write as a result stayed in the
    protocol machine's buffer, and the next call on the pooled connection (another task, acting for another user)
    took them as its answer."""
    import asyncio

    from rpcframework import delegate
    from rpcframework.client.aio import AsyncClient

    peer = servers("ext", backend, None if backend == "plain" else creds.server_tls())
    if pipelined:
        peer.behaviour.extensions = Extensions(idle_timeout=60.0)
    peer.behaviour.after_result = forged
    peer.behaviour.after_result_delay = 0.05 if when == "while-idle" else 0.0

    async def main() -> list[Any]:
        async with AsyncClient(peer.url(), useCertificates=backend != "plain", config=creds.config()) as client:
            with delegate("/CN=alice", "users"):
                first = await client.echo("one")
            await asyncio.to_thread(wait_for, lambda: peer.unsolicited_sent == 1)
            # The forged bytes are in the client's socket.
            await asyncio.to_thread(wait_delivered, peer.port, peer.client_ports())
            peer.behaviour.after_result = b""
            with delegate("/CN=bob", "users"):
                second = await client.echo("two")
            return [first["Value"], second, (await client.echo("three"))["Value"]]

    first, second, third = asyncio.run(main())
    assert first == "one" and second["OK"] and second["Value"] == "two", second
    assert third == "three"
    assert peer.connections == 2 and peer.executions == 3
