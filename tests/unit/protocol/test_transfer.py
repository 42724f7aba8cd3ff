"""ClientTransfer / ServerTransfer driven against each other through bytes, both modes, both directions."""

from __future__ import annotations

import hashlib
import os
import random
import time
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rpcframework.codec import Encoding, encode
from rpcframework.errors import ConnectionClosedError, ProtocolError, UnexpectedMessageError
from rpcframework.protocol.events import NEED_DATA, PAUSED, LocalProtocolError, ProposalAccepted, Sentinel
from rpcframework.protocol.framing import encode_frame, encode_keepalive_frame
from rpcframework.protocol.messages import (
    ActionType,
    Extensions,
    Feature,
    FileInfo,
    KeepAlive,
    Proposal,
    TransferDirection,
)
from rpcframework.protocol.rpc import ClientConnection, ServerConnection
from rpcframework.protocol.transfer import (
    CHECKSUM_ERROR,
    CHUNK_SIZE,
    EXCEEDED_MAX_SIZE,
    INCOMPLETE_TRANSFER,
    ChunkAcknowledged,
    ChunkReceived,
    ClientTransfer,
    FileInfoReceived,
    ResultReceived,
    ServerTransfer,
    TransferAborted,
    TransferAccepted,
    TransferFinished,
    TransferMode,
    TransferRefused,
    TransferStarted,
    abort_message,
)
from rpcframework.protocol.transfer_data import (
    transfer_chunk_message,
    transfer_end_message,
)
from rpcframework.returnvalues import S_ERROR, S_OK

DIRAC = None
STREAM = Extensions(features=frozenset({Feature.STREAM, Feature.RESUME, Feature.REUSE}))
STREAM_TYPED = Extensions(features=frozenset({Feature.STREAM, Feature.TYPED}))
STREAM_CRC32 = Extensions(features=frozenset({Feature.STREAM, Feature.RESUME, Feature.CRC32}))


def expected_digest(extensions: Extensions | None, payload: bytes) -> str:
    """What each mode checks a whole file with: MD5 (DIRAC), CRC-32 when negotiated, else SHA-256."""
    if extensions is None:
        return hashlib.md5(payload).hexdigest()
    if Feature.CRC32 in extensions.features:
        return f"{zlib.crc32(payload):08x}"
    return hashlib.sha256(payload).hexdigest()


DIRAC_RESUME = Extensions(features=frozenset({Feature.RESUME}))
UPLOADS = (TransferDirection.FromClient, TransferDirection.BulkFromClient)
DOWNLOADS = (TransferDirection.ToClient, TransferDirection.BulkToClient)


def make_pair(direction, extensions=None, encoding=Encoding.JSON, **kwargs):
    """A client and a server transfer machine after a real proposal/ack exchange."""
    client = ClientConnection(encoding=encoding, offer=extensions)
    server = ServerConnection(extensions=extensions)
    proposal = Proposal(service="Bench/Store", action_type=ActionType.FileTransfer, action_name=direction.value)
    server.receive_data(client.send_proposal(proposal))
    server.next_event()
    client.receive_data(server.accept())
    assert isinstance(client.next_event(), ProposalAccepted)
    return ClientTransfer(client.hand_over(), **kwargs), ServerTransfer(server.hand_over(), **kwargs)


class Duplex:
    """Carries bytes between the two machines, in random splits, collecting each side's events."""

    def __init__(self, client, server, rng=None):
        self.machines = {"c": client, "s": server}
        self.events = {"c": [], "s": []}
        self.rng = rng or random.Random(0)

    def other(self, side):
        return "s" if side == "c" else "c"

    def deliver(self, side, data):
        queue = [(side, data)]
        while queue:
            side, data = queue.pop(0)
            machine = self.machines[side]
            pos = 0
            while pos < len(data):
                step = self.rng.randint(1, max(1, len(data) // 3 + 1))
                machine.receive_data(data[pos : pos + step])
                pos += step
                self.drain(side, queue)
            if not data:
                self.drain(side, queue)

    def drain(self, side, queue):
        machine = self.machines[side]
        while True:
            event = machine.next_event()
            out = machine.data_to_send()
            if out:
                queue.append((self.other(side), out))
            if isinstance(event, Sentinel):
                return
            if isinstance(event, ChunkReceived):
                event = ChunkReceived(bytes(event.data))
            self.events[side].append(event)

    def take(self, side):
        events, self.events[side] = self.events[side], []
        return events


def open_transfer(link, client, server, info):
    link.deliver("s", client.start(info))
    (event,) = link.take("s")
    assert isinstance(event, FileInfoReceived)
    assert event.info.file_id == info.file_id and event.info.offset == info.offset
    link.deliver("c", server.accept())
    assert link.take("c") == [TransferAccepted()]


def send_all(link, sender_side, payload, chunk_size, corrupt=None):
    """Send ``payload`` from one side in chunks; ``corrupt(frame) -> frame`` alters what the receiver gets."""
    sender = link.machines[sender_side]
    receiver_side = link.other(sender_side)
    pos = 0
    while pos < len(payload):
        if not sender.can_send_chunk:
            if sender.data_done:
                return
            raise AssertionError(f"sender stuck: {link.events}")
        piece = payload[pos : pos + chunk_size]
        frame = sender.send_chunk(piece)
        if corrupt is not None and pos == 0:
            frame = corrupt(frame, piece)
        link.deliver(receiver_side, frame)
        pos += len(piece)
    if sender.can_send_chunk:
        link.deliver(receiver_side, sender.send_end())
        link.deliver(sender_side, b"")  # collect the sender's own TransferFinished (DIRAC: nothing answers)


def received(events):
    return b"".join(e.data for e in events if isinstance(e, ChunkReceived))


def run(direction, extensions, payload, *, chunk_size=1000, encoding=Encoding.JSON, rng=None, result=None, **kw):
    client, server = make_pair(direction, extensions, encoding, **kw)
    link = Duplex(client, server, rng)
    size = len(payload) if direction is TransferDirection.FromClient else None
    open_transfer(link, client, server, FileInfo("f.dat", "", size))
    sender_side = "c" if direction in UPLOADS else "s"
    send_all(link, sender_side, payload, chunk_size)
    events = {"c": link.take("c"), "s": link.take("s")}
    link.deliver("c", server.send_result(result or S_OK("stored")))
    events["c"] += link.take("c")
    return client, server, events


@given(
    direction=st.sampled_from(UPLOADS + DOWNLOADS),
    extensions=st.sampled_from([DIRAC, STREAM, STREAM_TYPED, STREAM_CRC32]),
    encoding=st.sampled_from([Encoding.JSON, Encoding.DENCODE]),
    payload=st.binary(max_size=4000),
    chunk_size=st.integers(1, 1500),
    rng=st.randoms(use_true_random=False),
)
def test_round_trip_any_split(direction, extensions, encoding, payload, chunk_size, rng):
    client, server, events = run(direction, extensions, payload, chunk_size=chunk_size, encoding=encoding, rng=rng)
    sender, receiver = ("c", "s") if direction in UPLOADS else ("s", "c")
    assert received(events[receiver]) == payload
    digest = expected_digest(extensions, payload)
    assert TransferFinished(True, len(payload), digest) in events[receiver]
    assert TransferFinished(True, len(payload), digest) in events[sender]
    assert events["c"][-1] == ResultReceived(S_OK("stored"))
    assert client.done and server.done and server.in_sync
    if extensions is None:
        acks = [e for e in events[sender] if isinstance(e, ChunkAcknowledged)]
        assert len(acks) == len([e for e in events[receiver] if isinstance(e, ChunkReceived)])
    assert client.mode is (TransferMode.STREAM if extensions else TransferMode.DIRAC)


def test_a_crc32_stream_ends_with_the_crc32_of_the_whole_file():
    client, server = make_pair(TransferDirection.FromClient, STREAM_CRC32)
    link = Duplex(client, server)
    open_transfer(link, client, server, FileInfo("f", "", 6))
    client.send_chunk(b"abc")
    client.send_chunk(b"xyz")
    end = {"crc32": f"{zlib.crc32(b'abcxyz'):08x}", "size": 6}
    assert client.send_end() == encode_frame(encode(S_OK([False, end])))
    assert client.checksum == server.checksum == "crc32"


@pytest.mark.parametrize(
    ("extensions", "end"),
    [
        (STREAM_CRC32, {"sha256": "0" * 64, "size": 3}),  # the other checksum than negotiated
        (STREAM_CRC32, {"crc32": "0" * 64, "size": 3}),
        (STREAM, {"crc32": "00000000", "size": 3}),
    ],
)
def test_an_end_message_with_another_checksum_than_negotiated_is_a_protocol_error(extensions, end):
    client, server = make_pair(TransferDirection.FromClient, extensions)
    link = Duplex(client, server)
    open_transfer(link, client, server, FileInfo("f", "", 3))
    server.receive_data(encode_frame(encode(S_OK([False, end]))))
    with pytest.raises(ProtocolError):
        for _ in range(10):
            server.next_event()


def test_stream_chunks_are_raw_frames():
    client, server = make_pair(TransferDirection.FromClient, STREAM)
    link = Duplex(client, server)
    open_transfer(link, client, server, FileInfo("f", "", 3))
    assert client.send_chunk(b"abc") == b"4:\x00abc"
    header, view = client.send_chunk_parts(b"xyz")
    assert header == b"4:\x00" and isinstance(view, memoryview)
    digest = hashlib.sha256(b"abcxyz").hexdigest()
    assert client.send_end() == encode_frame(encode(S_OK([False, {"sha256": digest, "size": 6}])))


@pytest.mark.parametrize("extensions", [DIRAC, STREAM, STREAM_CRC32])
@pytest.mark.parametrize("direction", UPLOADS + DOWNLOADS)
def test_corrupted_chunk_is_a_checksum_error(direction, extensions):
    def corrupt(frame, piece):
        if extensions is None:
            return encode_frame(encode(transfer_chunk_message(bytes([piece[0] ^ 1]) + piece[1:])))
        return frame[:-1] + bytes([frame[-1] ^ 0xFF])

    client, server = make_pair(direction, extensions)
    link = Duplex(client, server)
    open_transfer(link, client, server, FileInfo("f", "", 5 if direction is TransferDirection.FromClient else None))
    sender_side = "c" if direction in UPLOADS else "s"
    send_all(link, sender_side, b"hello world", 4, corrupt=corrupt)
    receiver_side = link.other(sender_side)
    finished = [e for e in link.take(receiver_side) if isinstance(e, TransferFinished)]
    assert len(finished) == 1 and not finished[0].checksum_ok
    sender_events = link.take(sender_side)
    if extensions is not None:  # stream: the receiver's answer tells the sender
        assert [e.checksum_ok for e in sender_events if isinstance(e, TransferFinished)] == [False]
    link.deliver("c", server.send_result(S_ERROR(CHECKSUM_ERROR)))
    assert link.take("c")[-1] == ResultReceived(S_ERROR(CHECKSUM_ERROR))


@pytest.mark.parametrize("extensions", [DIRAC, STREAM])
@pytest.mark.parametrize("direction", UPLOADS + DOWNLOADS)
def test_size_cap_aborts(direction, extensions):
    client, server = make_pair(direction, extensions, max_size=2500)
    link = Duplex(client, server)
    open_transfer(link, client, server, FileInfo("f", "", 4000 if direction is TransferDirection.FromClient else None))
    sender_side = "c" if direction in UPLOADS else "s"
    receiver_side = link.other(sender_side)
    send_all(link, sender_side, os.urandom(4000), 1000)
    receiver_events = link.take(receiver_side)
    assert received(receiver_events) == b"" or len(received(receiver_events)) <= 2500
    assert receiver_events[-1] == TransferAborted(EXCEEDED_MAX_SIZE, by_peer=False)
    assert link.take(sender_side)[-1] == TransferAborted(EXCEEDED_MAX_SIZE, by_peer=True)
    link.deliver("c", server.send_result(S_ERROR(EXCEEDED_MAX_SIZE)))
    assert link.take("c") == [ResultReceived(S_ERROR(EXCEEDED_MAX_SIZE))]
    assert server.in_sync and client.done and server.done


def test_stream_receiver_abort_drains_chunks_in_flight():
    client, server = make_pair(TransferDirection.FromClient, STREAM)
    link = Duplex(client, server)
    open_transfer(link, client, server, FileInfo("f", "", -1))
    link.deliver("s", client.send_chunk(b"a" * 10))
    abort = server.abort("disk full")
    in_flight = client.send_chunk(b"b" * 10) + client.send_chunk(b"c" * 10)
    link.deliver("s", in_flight)
    assert not [e for e in link.take("s") if isinstance(e, TransferAborted)]  # still draining
    link.deliver("c", abort)  # the client answers with its own abort, which ends the drain
    assert link.take("c")[-1] == TransferAborted("disk full", by_peer=True)
    assert link.take("s")[-1] == TransferAborted("disk full", by_peer=False)
    link.deliver("c", server.send_result(S_ERROR("disk full")))
    assert link.take("c") == [ResultReceived(S_ERROR("disk full"))]
    assert server.in_sync


@pytest.mark.parametrize("extensions", [DIRAC, STREAM])
@pytest.mark.parametrize("direction", UPLOADS + DOWNLOADS)
def test_sender_abort_mid_way(direction, extensions):
    client, server = make_pair(direction, extensions)
    link = Duplex(client, server)
    open_transfer(link, client, server, FileInfo("f", "", 10 if direction is TransferDirection.FromClient else None))
    sender_side = "c" if direction in UPLOADS else "s"
    receiver_side = link.other(sender_side)
    sender = link.machines[sender_side]
    link.deliver(receiver_side, sender.send_chunk(b"0123456789"))
    if extensions is None:
        assert link.take(sender_side) == [ChunkAcknowledged()]
    link.deliver(receiver_side, sender.abort("source vanished"))
    assert link.take(receiver_side)[-1] == TransferAborted("source vanished", by_peer=True)
    link.deliver(sender_side, b"")
    assert link.take(sender_side) == [TransferAborted("source vanished", by_peer=False)]
    link.deliver("c", server.send_result(S_ERROR("source vanished")))
    assert link.take("c")[-1] == ResultReceived(S_ERROR("source vanished"))
    assert server.in_sync and client.done


@pytest.mark.parametrize("direction", UPLOADS + DOWNLOADS)
def test_dirac_receiver_abort_answers_the_chunk(direction):
    client, server = make_pair(direction)
    link = Duplex(client, server)
    open_transfer(link, client, server, FileInfo("f", "", 10 if direction is TransferDirection.FromClient else None))
    sender_side = "c" if direction in UPLOADS else "s"
    receiver_side = link.other(sender_side)
    sender, receiver = link.machines[sender_side], link.machines[receiver_side]
    receiver.receive_data(sender.send_chunk(b"0123456789"))
    assert isinstance(receiver.next_event(), ChunkReceived)
    abort = receiver.abort("cannot write")  # before asking for the next event: replaces the ack
    assert receiver.next_event() == TransferAborted("cannot write", by_peer=False)
    assert receiver.next_event() is (PAUSED if receiver_side == "s" else NEED_DATA)
    assert receiver.data_to_send() == b""
    assert abort == encode_frame(encode(abort_message("cannot write")))
    link.deliver(sender_side, abort)
    assert link.take(sender_side) == [TransferAborted("cannot write", by_peer=True)]
    assert not sender.can_send_chunk


def test_dirac_abort_message_wire_form():
    assert encode(abort_message("x")) == b'{"OK": false, "Errno": 0, "Message": "x", "AbortTransfer": true}'


@pytest.mark.parametrize("extensions", [STREAM, STREAM_CRC32, DIRAC_RESUME])
@pytest.mark.parametrize("granted", [0, 4, 7])
def test_resume_from_offset(extensions, granted):
    payload = b"0123456789abcdef"
    client, server = make_pair(TransferDirection.ToClient, extensions)
    link = Duplex(client, server)
    open_transfer(link, client, server, FileInfo("f", "", None, offset=7))
    assert server.requested_offset == 7
    with pytest.raises(LocalProtocolError):
        server.send_chunk(b"x")  # the granted offset must come first
    link.deliver("c", server.send_start(granted))
    assert link.take("c") == [TransferStarted(granted)]
    client.hash_prefix(payload[:granted])  # the client already holds these bytes
    server.hash_prefix(payload[:granted])
    send_all(link, "s", payload[granted:], 5)
    events = link.take("c")
    assert received(events) == payload[granted:]
    stream = Feature.STREAM in extensions.features
    assert events[-1] == TransferFinished(True, len(payload), expected_digest(extensions if stream else None, payload))
    assert client.offset == granted and client.transferred == len(payload) - granted


@pytest.mark.parametrize("extensions", [STREAM, STREAM_CRC32])
def test_resume_prefix_mismatch_is_detected(extensions):
    client, server = make_pair(TransferDirection.ToClient, extensions)
    link = Duplex(client, server)
    open_transfer(link, client, server, FileInfo("f", "", None, offset=3))
    link.deliver("c", server.send_start(3))
    client.hash_prefix(b"XYZ")  # a stale partial file
    server.hash_prefix(b"abc")
    send_all(link, "s", b"def", 3)
    assert [e.checksum_ok for e in link.take("c") if isinstance(e, TransferFinished)] == [False]


def test_resume_needs_the_extension():
    client, _ = make_pair(TransferDirection.ToClient, None)
    with pytest.raises(LocalProtocolError):
        client.start(FileInfo("f", "", None, offset=3))
    client, _ = make_pair(TransferDirection.FromClient, STREAM)
    with pytest.raises(LocalProtocolError):
        client.start(FileInfo("f", "", 3, offset=3))


def test_resume_offset_beyond_request_is_refused():
    client, server = make_pair(TransferDirection.ToClient, STREAM)
    link = Duplex(client, server)
    open_transfer(link, client, server, FileInfo("f", "", None, offset=3))
    with pytest.raises(LocalProtocolError):
        server.send_start(4)
    client.receive_data(encode_frame(encode(S_OK({"offset": 9}))))
    with pytest.raises(UnexpectedMessageError):
        client.next_event()


def test_refused_file_info():
    client, server = make_pair(TransferDirection.FromClient)
    link = Duplex(client, server)
    link.deliver("s", client.start(FileInfo("f", "", 3)))
    link.take("s")
    link.deliver("c", server.refuse(S_ERROR("Service can't transfer files fromClient")))
    assert link.take("c") == [TransferRefused(S_ERROR("Service can't transfer files fromClient"))]
    assert client.done and server.done


def test_list_bulk_has_no_data_phase():
    client, server = make_pair(TransferDirection.ListBulk)
    link = Duplex(client, server)
    open_transfer(link, client, server, FileInfo("bulk1.tar.bz2", ""))
    assert not server.sending and not client.sending and server.data_done
    link.deliver("c", server.send_result(S_OK(["a.txt", "b.txt"])))
    assert link.take("c") == [ResultReceived(S_OK(["a.txt", "b.txt"]))]


def test_early_success_becomes_incomplete_transfer():
    client, server = make_pair(TransferDirection.FromClient, STREAM)
    link = Duplex(client, server)
    open_transfer(link, client, server, FileInfo("f", "", 3))
    link.deliver("c", server.send_result(S_OK()))
    assert link.take("c") == [ResultReceived(S_ERROR(INCOMPLETE_TRANSFER))]
    assert not server.in_sync


def test_early_error_result_reaches_a_receiving_client():
    client, server = make_pair(TransferDirection.ToClient)
    link = Duplex(client, server)
    open_transfer(link, client, server, FileInfo("missing", ""))
    link.deliver("c", server.send_result(S_ERROR("No such file")))
    assert link.take("c") == [ResultReceived(S_ERROR("No such file"))]


def test_result_never_carries_a_call_stack():
    client, server = make_pair(TransferDirection.ListBulk)
    link = Duplex(client, server)
    open_transfer(link, client, server, FileInfo("b.tar", ""))
    data = server.send_result({"OK": False, "Errno": 0, "Message": "boom", "CallStack": ["/srv/x.py"]})
    assert b"CallStack" not in data


def test_keepalive_during_transfer_is_answered():
    client, server = make_pair(TransferDirection.FromClient, STREAM)
    link = Duplex(client, server)
    open_transfer(link, client, server, FileInfo("f", "", 3))
    ping = encode_keepalive_frame(encode(KeepAlive("k1").to_wire()))
    server.receive_data(ping + client.send_chunk(b"abc"))
    assert server.next_event() == ChunkReceived(b"abc")
    assert server.data_to_send() == encode_keepalive_frame(encode(KeepAlive("k1", False).to_wire()))


def test_eof_mid_transfer_raises_and_stays_failed():
    client, server = make_pair(TransferDirection.FromClient, STREAM)
    link = Duplex(client, server)
    open_transfer(link, client, server, FileInfo("f", "", 3))
    server.receive_data(client.send_chunk(b"abc")[:3])
    server.receive_data(b"")
    with pytest.raises(ConnectionClosedError):
        server.next_event()
    with pytest.raises(LocalProtocolError):
        server.next_event()
    assert not server.in_sync


@pytest.mark.parametrize(
    "message",
    [
        S_OK([True, "not bytes but str is DEncode-only"]),
        S_OK([False, {"sha256": "short", "size": 1}]),
        S_OK("junk"),
    ],
)
def test_malformed_stream_messages(message):
    client, server = make_pair(TransferDirection.FromClient, STREAM)
    link = Duplex(client, server)
    open_transfer(link, client, server, FileInfo("f", "", 3))
    server.receive_data(encode_frame(encode(message)))
    with pytest.raises(ProtocolError):
        server.next_event()


def test_raw_frame_is_refused_in_dirac_mode():
    client, server = make_pair(TransferDirection.FromClient)
    link = Duplex(client, server)
    open_transfer(link, client, server, FileInfo("f", "", 3))
    server.receive_data(b"4:\x00abc")
    with pytest.raises(ProtocolError):
        server.next_event()


def test_misuse_is_a_local_error():
    client, server = make_pair(TransferDirection.FromClient)
    with pytest.raises(LocalProtocolError):
        client.send_chunk(b"x")
    link = Duplex(client, server)
    open_transfer(link, client, server, FileInfo("f", "", 3))
    with pytest.raises(LocalProtocolError):
        server.send_chunk(b"x")  # the server receives here
    with pytest.raises(LocalProtocolError):
        client.send_chunk(b"x" * (CHUNK_SIZE + 1))
    client.send_chunk(b"x")
    with pytest.raises(LocalProtocolError):
        client.send_chunk(b"y")  # DIRAC: wait for the ack


def test_no_checksum_token_accepts_an_empty_digest():
    client, server = make_pair(TransferDirection.FromClient)
    link = Duplex(client, server)
    open_transfer(link, client, server, FileInfo("f", "NoCheckSum", 3))
    link.deliver("s", client.send_chunk(b"abc"))
    link.deliver("s", encode_frame(encode(S_OK([False, ""]))))
    assert link.take("s")[-1].checksum_ok


def test_256_mib_stream_throughput(capsys):
    """Not a speed assertion: prints MiB/s through both machines (sender framing, decoder, hashing)."""
    client, server = make_pair(TransferDirection.FromClient, STREAM)
    link = Duplex(client, server)
    open_transfer(link, client, server, FileInfo("big", "", 256 * CHUNK_SIZE))
    chunk = os.urandom(CHUNK_SIZE)
    total = 0
    start = time.perf_counter()
    for _ in range(256):
        header, view = client.send_chunk_parts(chunk)
        server.receive_data(header)
        server.receive_data(view)
        event = server.next_event()
        assert isinstance(event, ChunkReceived)
        total += len(event.data)
    server.receive_data(client.send_end())
    event = server.next_event()
    elapsed = time.perf_counter() - start
    assert event == TransferFinished(True, total, event.digest) and event.checksum_ok
    client.receive_data(server.data_to_send())
    assert client.next_event().checksum_ok
    with capsys.disabled():
        print(f"\n256 MiB streamed through ClientTransfer -> ServerTransfer: {256 / elapsed:.0f} MiB/s")


@pytest.mark.parametrize(
    ("direction", "token", "passes"),
    [
        (TransferDirection.ToClient, "", False),  # a server always computes MD5: none means a broken or hostile one
        (TransferDirection.ToClient, "NoCheckSum", False),
        (TransferDirection.FromClient, "", False),
        (TransferDirection.FromClient, "job NoCheckSum", True),  # what a DIRAC client sends with that token
    ],
)
def test_an_empty_md5_passes_only_from_a_dirac_client_that_said_nochecksum(direction, token, passes):
    client, server = make_pair(direction, DIRAC)
    link = Duplex(client, server)
    open_transfer(link, client, server, FileInfo("f", token, 5 if direction is TransferDirection.FromClient else None))
    sender_side, receiver_side = ("c", "s") if direction is TransferDirection.FromClient else ("s", "c")
    link.deliver(receiver_side, link.machines[sender_side].send_chunk(b"hello"))  # the ack goes back by itself
    link.deliver(receiver_side, encode_frame(encode(transfer_end_message(""))))  # no digest at all
    finished = [e for e in link.take(receiver_side) if isinstance(e, TransferFinished)]
    assert [e.checksum_ok for e in finished] == [passes]
