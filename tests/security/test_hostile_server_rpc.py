"""Our RPC clients against a hostile server of the test's making (tests/support/hostile_server.py): what a server
does to the TLS stream itself, beyond the frames (see tests/integration/client/test_hostile_server.py for those)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest
from support.hostile_server import HostilePeer
from support.security_kit import Kit

from rpcframework import Client
from rpcframework.client.aio import AsyncClient
from rpcframework.errors import RPCFrameworkError

pytestmark = pytest.mark.timeout(60)


def _close_notify_mid_reply(peer: HostilePeer) -> None:
    """Ack the call, read its arguments, send half a result, then TLS close_notify while TCP stays open."""
    peer.accept()
    peer.recv_message()
    peer.send(b'30:{"OK": true, "Val')
    with contextlib.suppress(Exception):
        peer.stream._conn.shutdown()  # close_notify only: the socket stays open until the client goes
    peer.client_closed(15.0)  # bounded: longer than the client's 10 s deadline


@pytest.mark.parametrize("client", ["async", "blocking"])
def test_close_notify_in_the_middle_of_a_reply_ends_the_call_at_once(kit: Kit, hostile: Any, client: str) -> None:
    """Found by the attack run on the asyncio client: it ignored the server's close_notify and waited for its
    deadline (6 s) where the blocking client failed at once."""
    server = hostile(_close_notify_mid_reply)
    options = {"proxyLocation": str(kit.user.proxy_file), "caLocation": str(kit.ca.cert_dir), "retries": 0}
    started = time.monotonic()
    if client == "async":

        async def call() -> Any:
            async with AsyncClient(server.url, timeout=10, **options) as aclient:
                return await aclient.echo("one")

        result = asyncio.run(call())
    else:
        with Client(server.url, timeout=10, **options) as bclient:
            result = bclient.echo("one")
    assert not result["OK"], result
    assert "Deadline" not in result["Message"] and "timed out" not in result["Message"], result
    assert time.monotonic() - started < 8  # the call's deadline is 10 s: it ended on the close, not on a timer
    with contextlib.suppress(RPCFrameworkError):
        server.wait(timeout=5)
