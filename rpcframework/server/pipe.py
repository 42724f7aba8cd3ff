"""The blocking side of a connection a worker owns for a file transfer: :class:`StreamPipe` (the transfer helper's
channel over the transport stream) and the wait for the file-info message."""

from __future__ import annotations

import select
from typing import Final

from rpcframework.errors import ProtocolError
from rpcframework.protocol.events import NEED_DATA
from rpcframework.protocol.messages import FileInfo
from rpcframework.protocol.transfer import FileInfoReceived, ServerTransfer
from rpcframework.transports.base import Stream

__all__ = ["GONE_EVENTS", "RECV_SIZE", "StreamPipe", "read_file_info"]

#: How much a server read asks its stream for.
RECV_SIZE: Final = 256 * 1024
#: Reads allowed for the file-info message of a transfer (each waits at most read_timeout).
_MAX_INFO_READS: Final = 4096
#: POLLRDHUP (Linux) reports a peer that shut down its side even when unread bytes are still queued.
GONE_EVENTS: Final = getattr(select, "POLLRDHUP", 0) | select.POLLHUP | select.POLLERR | select.POLLNVAL


class StreamPipe:
    """A :class:`~rpcframework.transfer.helper.Channel` over a blocking transport stream, with read and write
    timeouts (a transfer runs in a worker thread, which may block on its own peer)."""

    def __init__(self, stream: Stream, read_timeout: float | None, write_timeout: float | None) -> None:
        self.stream = stream
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout
        self._reading = True
        stream.settimeout(read_timeout)

    def send(self, data: bytes | memoryview) -> None:
        if data:
            if self._reading:  # only this pipe uses the stream: change the timeout when the direction changes
                self._reading = False
                self.stream.settimeout(self.write_timeout)
            self.stream.send_all(data)  # a memoryview goes out as is: no copy

    def recv(self) -> bytes:
        if not self._reading:
            self._reading = True
            self.stream.settimeout(self.read_timeout)
        return self.stream.recv(RECV_SIZE)

    def recv_into(self, view: memoryview) -> int:
        if not self._reading:
            self._reading = True
            self.stream.settimeout(self.read_timeout)
        return self.stream.recv_into(view)

    def poll(self) -> bool:
        if self.stream.pending() > 0:
            return True
        poller = select.poll()
        poller.register(self.stream.fileno(), select.POLLIN | GONE_EVENTS)
        return bool(poller.poll(0))


def read_file_info(machine: ServerTransfer, pipe: StreamPipe) -> FileInfo:
    """Run the transfer machine until the client's file-info message has arrived, sending what it owes."""
    for _ in range(_MAX_INFO_READS):
        event = machine.next_event()
        pipe.send(machine.data_to_send())
        if isinstance(event, FileInfoReceived):
            return event.info
        if event is not NEED_DATA:
            raise ProtocolError(f"expected the file information, got {event!r}")
        machine.receive_data(pipe.recv())
    raise ProtocolError("no file information after many reads")
