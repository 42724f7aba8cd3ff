"""The byte pipe under a client transfer, and the two limits on how long a server may hold it.

* **Progress** (``Timeout.total``, the ``timeout`` option): the longest wait without the transfer moving on. Only
  the server's messages and data count; ``dka`` keepalive pings do not: they show the server is alive, not that
  it sends anything, and a server that only pings would otherwise hold a client forever.
* **Duration** (``max_duration``): the whole transfer, all attempts included, however the server trickles.

Either ends the transfer with :class:`~rpcframework.errors.DeadlineExceeded`, whose message says which.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable
from typing import Final

from rpcframework.client.policy import Deadline
from rpcframework.errors import DeadlineExceeded
from rpcframework.transports import Stream

__all__ = ["TransferLimits", "TransferPipe"]

_RECV_SIZE: Final = 256 * 1024


def _no_progress_marker() -> object:
    return None


class TransferLimits:
    """Both limits of one transfer: each wait may last until the transfer made no progress for ``idle`` seconds, or
    until ``deadline`` (``max_duration``) passes, whichever comes first. Shared by the blocking and asyncio clients.

    ``progress`` returns a value that changes whenever the transfer moves on (the transfer machine's
    :attr:`~rpcframework.protocol.transfer.TransferEndpoint.progress`: the server's messages and data, our data
    chunks); before a machine exists, every answer the caller reads is reported with :meth:`moved_on`. What we
    send in reply (keepalive pongs, acks) is not progress.
    """

    def __init__(self, idle: float | None, deadline: Deadline, max_duration: float | None) -> None:
        self.idle = idle
        self.deadline = deadline
        self.max_duration = max_duration
        self.progress: Callable[[], object] = _no_progress_marker
        self._marker: object = None
        self._moved_at = time.monotonic()

    def moved_on(self) -> None:
        """The transfer advanced (an answer came before the data phase): the progress wait starts again."""
        self._moved_at = time.monotonic()

    def limit(self) -> float | None:
        """Seconds the next wait may take; raises :class:`DeadlineExceeded` naming the limit once one has passed."""
        now = time.monotonic()
        marker = self.progress()
        if marker != self._marker:
            self._marker = marker
            self._moved_at = now
        limit = self.deadline.remaining()
        if limit is not None and limit <= 0:
            raise DeadlineExceeded(
                f"the transfer did not finish within max_duration ({self.max_duration:g} s); raise it for larger files"
            )
        if self.idle is not None:
            left = self.idle - (now - self._moved_at)
            if left <= 0:
                raise DeadlineExceeded(
                    f"the transfer made no progress for {self.idle:g} s (keepalive pings are not progress); "
                    "the server is stalled, try again or another server"
                )
            limit = left if limit is None else min(limit, left)
        return limit


class TransferPipe(TransferLimits):
    """The ``FileHelper`` channel over a blocking client stream, bounding each wait by both limits."""

    def __init__(self, stream: Stream, idle: float | None, deadline: Deadline, max_duration: float | None) -> None:
        super().__init__(idle, deadline, max_duration)
        self.stream = stream

    def send(self, data: bytes | memoryview) -> None:
        if not data:
            return
        self.stream.settimeout(self.limit())
        try:
            self.stream.send_all(data)  # a memoryview goes out as is: no copy
        except DeadlineExceeded:
            self.limit()  # the limit that ran out, named
            raise

    def recv(self) -> bytes:
        self.stream.settimeout(self.limit())
        try:
            return self.stream.recv(_RECV_SIZE)
        except DeadlineExceeded:
            self.limit()
            raise

    def recv_into(self, view: memoryview) -> int:
        self.stream.settimeout(self.limit())
        try:
            return self.stream.recv_into(view)
        except DeadlineExceeded:
            self.limit()
            raise

    def poll(self) -> bool:
        if self.stream.pending() > 0:
            return True
        poller = select.poll()
        poller.register(self.stream.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR)
        return bool(poller.poll(0))
