"""atheris target: arbitrary bytes, split arbitrarily, into FrameDecoder and both RPC state machines.

Property (h11's fuzz rule): every input is either accepted or rejected with our ProtocolError / CodecError (and
ConnectionClosedError at EOF mid-exchange); any other exception is a bug. Run:
``python tests/fuzz/fuzz_framing.py -max_total_time=15 -rss_limit_mb=2048 [corpus_dir]``.
Input layout: a mode byte (decoder, DIRAC-mode server, extension server, client), a chunk-size byte, the stream.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from rpcframework.errors import CodecError, ConnectionClosedError, ProtocolError
    from rpcframework.protocol.events import (
        ArgumentsReceived,
        ConnectionClosed,
        ConnectionState,
        ProposalAccepted,
        ProposalReceived,
        Sentinel,
    )
    from rpcframework.protocol.framing import FrameDecoder
    from rpcframework.protocol.messages import Extensions, Proposal
    from rpcframework.protocol.rpc import ClientConnection, ServerConnection
    from rpcframework.returnvalues import S_OK

EXPECTED = (ProtocolError, CodecError, ConnectionClosedError)
PROPOSAL = Proposal(service="Fuzz/Target", action_name="echo")


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def _run_decoder(chunks: list[bytes], max_frame_size: int) -> None:
    decoder = FrameDecoder(max_frame_size)
    for chunk in chunks:
        decoder.feed(chunk)
        while decoder.next_frame() is not None:
            pass
    decoder.eof()


def _drive(conn: ServerConnection | ClientConnection, chunks: list[bytes]) -> None:
    for chunk in [*chunks, b""]:
        conn.receive_data(chunk)
        while True:
            event = conn.next_event()
            conn.data_to_send()
            if isinstance(event, Sentinel):
                break
            if isinstance(event, ProposalReceived):
                assert isinstance(conn, ServerConnection)
                conn.accept()
            elif isinstance(event, ArgumentsReceived):
                assert isinstance(conn, ServerConnection)
                try:
                    conn.send_result(S_OK(event.args))
                except CodecError:
                    conn.send_result(S_OK())
            elif isinstance(event, ProposalAccepted) and conn.state is ConnectionState.ACCEPTED:
                assert isinstance(conn, ClientConnection)
                conn.send_arguments(["x"])
            elif isinstance(event, ConnectionClosed):
                return


def test_one_input(data: bytes) -> None:
    # Layout (simple on purpose, so seeds can be real captured streams): mode byte, chunk-size byte, stream.
    if len(data) < 2:
        return
    mode = data[0] % 4
    chunks = _chunks(data[2:], data[1] % 64 + 1)
    try:
        if mode == 0:
            _run_decoder(chunks, data[1] * 16)
        elif mode == 1:
            _drive(ServerConnection(), chunks)
        elif mode == 2:
            _drive(ServerConnection(extensions=Extensions()), chunks)
        else:
            client = ClientConnection(offer=Extensions())
            client.send_proposal(PROPOSAL)
            _drive(client, chunks)
    except EXPECTED:
        pass


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
