"""Bytes on the wire: a frame header, reading until the peer closes, and knowing that sent bytes have arrived."""

from __future__ import annotations

import json
import select
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from rpcframework.errors import ConnectionClosedError
from support.waiting import DEFAULT_TIMEOUT, wait_for


class Receiver(Protocol):
    """A ``socket.socket`` or a transport ``Stream``: both can be read with a per-read timeout."""

    def settimeout(self, seconds: float | None, /) -> None: ...

    def recv(self, max_bytes: int, /) -> bytes: ...


def frame(payload: bytes) -> bytes:
    """``b"<len>:" + payload``, with no size check: tests send frames the framework must refuse, too."""
    return b"%d:%b" % (len(payload), payload)


def frame_value(data: bytes) -> Any:
    """The ``Value`` of the JSON envelope in one ``<len>:<payload>`` frame."""
    return json.loads(data.split(b":", 1)[1])["Value"]


def read_until_closed(conn: Receiver, timeout: float = 5.0) -> tuple[bytes, bool]:
    """Everything the peer sends until it closes (``True``) or ``timeout`` passes (``False``).

    Works on raw sockets (a reset counts as closed) and on ``Stream`` objects (``ConnectionClosedError``);
    ``DeadlineExceeded`` is a ``TimeoutError``, so an idle read just tries again until the deadline.
    """
    conn.settimeout(0.1)
    data = bytearray()
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            chunk = conn.recv(65536)
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError, ConnectionClosedError):
            return bytes(data), True
        if not chunk:
            return bytes(data), True
        data += chunk
    return bytes(data), False


_FIN_NOT_ACKNOWLEDGED = {"04", "0B"}  # FIN_WAIT1, CLOSING: our FIN has not reached the peer yet


def _sockets(port: int, peer_ports: frozenset[int]) -> list[str]:
    """The kernel's lines (``/proc/net/tcp`` and ``tcp6``) for the sockets of local ``port`` talking to one of
    ``peer_ports``. The peers are named because a closed socket of an earlier server on the same port number may
    linger (a peer that stopped reading)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            try:
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            except (IndexError, ValueError):
                continue  # a line torn by sockets changing while the kernel wrote the table: the next look reads it
            if local_port == port and remote_port in peer_ports:
                found.append(line)
    return found


def _undelivered(port: int, peer_ports: frozenset[int]) -> list[str]:
    """Those sockets whose sent bytes or FIN the peer's kernel has not acknowledged."""
    return [
        line
        for line in _sockets(port, peer_ports)
        if int(line.split()[4].split(":", 1)[0], 16) or line.split()[3] in _FIN_NOT_ACKNOWLEDGED
    ]


def wait_delivered(port: int, peer_ports: Iterable[int], timeout: float = DEFAULT_TIMEOUT) -> None:
    """Until everything a server on ``port`` has sent to the clients on ``peer_ports``, closes included, sits in
    their sockets (their kernels acknowledged it): the ordering point a test needs before the client's next move,
    without sleeping."""
    peers = frozenset(peer_ports)
    assert peers, "no connection to wait for"
    message = f"bytes from port {port} not acknowledged in {timeout} s"
    wait_for(lambda: not _undelivered(port, peers), timeout, message)


_NOT_CLOSED_YET = {"01", "04", "08", "09", "0B"}  # ESTABLISHED, FIN_WAIT1, CLOSE_WAIT, LAST_ACK, CLOSING


def _still_open(port: int, peer_ports: frozenset[int]) -> list[str]:
    return [line for line in _sockets(port, peer_ports) if line.split()[3] in _NOT_CLOSED_YET]


def wait_closed(port: int, peer_ports: Iterable[int], timeout: float = DEFAULT_TIMEOUT) -> None:
    """Until the server on ``port`` has closed its connections to the clients on ``peer_ports`` and their kernels
    acknowledged the close: a client's next use of such a connection finds it closed."""
    peers = frozenset(peer_ports)
    assert peers, "no connection to wait for"
    wait_for(lambda: not _still_open(port, peers), timeout, f"connections of port {port} still open after {timeout} s")


def wait_readable(conn: Receiver, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Until bytes (or the peer's close) wait in ``conn``'s socket: a socket, a ``Stream`` or anything with
    ``fileno()``. Nothing is read."""
    fileno = conn.fileno()  # type: ignore[attr-defined]
    readable, _, _ = select.select([fileno], [], [], timeout)
    if not readable:
        raise AssertionError(f"nothing arrived in {timeout} s")
