"""Uploads cut or stalled in the middle of a large chunk (attack run 4): the chunk is read in place into a buffer
allocated from its header, so a header and a few bytes are all an attacker sends. The handler must get S_ERROR (not
an exception), and the buffer must be freed when the connection ends, not when a worker runs its next task."""

from __future__ import annotations

import gc
import logging
from typing import Any, ClassVar

import pytest
from support.security_kit import Kit
from support.waiting import wait_for
from support.wire import frame

from rpcframework.protocol.framing import FrameDecoder
from rpcframework.server import RequestHandler, Service, ServiceReactor
from rpcframework.transports import get_backend

pytestmark = pytest.mark.timeout(90)

BACKENDS = ["pyopenssl", pytest.param("m2crypto", marks=pytest.mark.m2crypto)]
PROPOSAL = b'{"OK": true, "Value": [["Sec/Sink", "None", "unknown"], ["FileTransfer", "FromClient"], "", "9.1.22"]}'
INFO = b'{"OK": true, "Value": ["up.bin", "", 8388608]}'


class SinkHandler(RequestHandler):
    auth_transfer_fromClient: ClassVar[list[str]] = ["authenticated"]
    results: ClassVar[list[Any]] = []

    def transfer_fromClient(self, fileId: str, token: str, fileSize: int, helper: Any) -> Any:
        result = helper.networkToDataSink(lambda data: None, max_size=8 * 1024 * 1024)
        SinkHandler.results.append(result)
        return result


def _read_frame(stream: Any) -> bytes:
    received = b""
    for _ in range(100):
        received += stream.recv(4096)
        head, colon, rest = received.partition(b":")
        if colon and len(rest) >= int(head):
            return rest
    raise AssertionError(f"no whole frame: {received!r}")


def _start_chunk(kit: Kit, reactor: ServiceReactor, backend: str) -> Any:
    """Propose an upload (DIRAC mode), send its info, then a 1.5 MB chunk's header and 5,000 bytes of it."""
    tls = kit.tls_for(kit.user.proxy_file)
    stream = get_backend(backend).connect("127.0.0.1", reactor.ports["Sec/Sink"], tls=tls, server_hostname="localhost")
    stream.settimeout(10)
    stream.send_all(frame(PROPOSAL))
    assert b'"OK": true' in _read_frame(stream)
    stream.send_all(frame(INFO))
    assert b"Accepted" in _read_frame(stream)
    stream.send_all(b"1500000:" + b'{"OK": true, "Value": [true, "' + b"A" * 5000)
    return stream


def _decoders_holding_a_chunk() -> int:
    return sum(1 for o in gc.get_objects() if isinstance(o, FrameDecoder) and o.missing > 0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("how", ["close", "stall"])
def test_an_upload_cut_in_a_chunk_is_an_error_and_frees_its_buffer(
    kit: Kit, backend: str, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    SinkHandler.results.clear()
    service = Service("Sec/Sink", SinkHandler, config=kit.config(), port=0)
    reactor = ServiceReactor([service], host="127.0.0.1", tls=kit.server_tls(), backend=backend, read_timeout=2)
    with caplog.at_level(logging.INFO), reactor:
        streams = [_start_chunk(kit, reactor, backend) for _ in range(3)]
        if how == "close":
            for stream in streams:
                stream.close()
        wait_for(lambda: len(SinkHandler.results) == 3, timeout=20)
        for stream in streams:
            stream.close()  # idempotent: the closed ones stay closed
        assert all(r["OK"] is False and "Transfer interrupted" in r["Message"] for r in SinkHandler.results)
        # Freed when each connection ends, without a garbage collection or another task on its worker.
        wait_for(lambda: _decoders_holding_a_chunk() == 0, timeout=10, message="chunk buffers still held")
    assert not [r for r in caplog.records if r.exc_info or "BufferError" in r.getMessage()]
