"""Bytes on the wire for tests that speak DISET by hand: a frame header, and reading until the peer closes."""

from __future__ import annotations

import time
from typing import Protocol

from rpcframework.errors import ConnectionClosedError


class Receiver(Protocol):
    """A ``socket.socket`` or a transport ``Stream``: both can be read with a per-read timeout."""

    def settimeout(self, seconds: float | None, /) -> None: ...

    def recv(self, max_bytes: int, /) -> bytes: ...


def frame(payload: bytes) -> bytes:
    """``b"<len>:" + payload``, with no size check: tests send frames the framework must refuse, too."""
    return b"%d:%b" % (len(payload), payload)


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
