"""TCP keepalive limits on client connections, and a connection the system declared dead reported as PeerSilent.

The behaviour itself (a host whose packets vanish is noticed in about ``keepalive`` seconds) needs a host that
goes silent: tests/integration/hosts/test_partition.py proves it in network namespaces.
"""

from __future__ import annotations

import errno
import socket

import pytest

from rpcframework.errors import ConnectionClosedError, PeerSilent
from rpcframework.transports.base import connection_lost
from rpcframework.transports.plain import open_tcp_connection

pytestmark = pytest.mark.timeout(30)


def test_keepalive_limits_are_set_on_new_connections() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        sock = open_tcp_connection("127.0.0.1", port, 5.0, keepalive=6.0)
        try:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 2
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 6000
        finally:
            sock.close()
        default = open_tcp_connection("127.0.0.1", port, 5.0)
        try:
            assert default.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 30_000
        finally:
            default.close()


def test_an_unanswered_connection_is_peer_silent_and_a_reset_is_closed() -> None:
    silent = connection_lost("10.0.0.1:9135", errno.ETIMEDOUT, "[Errno 110] Connection timed out")
    assert isinstance(silent, PeerSilent)
    assert isinstance(silent, TimeoutError)
    assert "10.0.0.1:9135" in str(silent)
    assert "down or cut off" in str(silent)
    reset = connection_lost("10.0.0.1:9135", errno.ECONNRESET, "reset", sending=True)
    assert type(reset) is ConnectionClosedError
    assert "while sending" in str(reset)
