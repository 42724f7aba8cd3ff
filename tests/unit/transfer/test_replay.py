"""DIRAC 9.1.22 transfer captures replayed through our machines: the bytes we produce equal DIRAC's."""

from __future__ import annotations

import hashlib
import io

import pytest
from support.wire import frame

from rpcframework.codec import Encoding
from rpcframework.protocol.events import ProposalAccepted, ProposalReceived
from rpcframework.protocol.messages import (
    HOST_CREDENTIALS,
    ActionType,
    FileInfo,
    Proposal,
    TransferDirection,
)
from rpcframework.protocol.rpc import ClientConnection, ServerConnection
from rpcframework.protocol.transfer import (
    ChunkAcknowledged,
    ChunkReceived,
    ClientTransfer,
    FileInfoReceived,
    ResultReceived,
    ServerTransfer,
    TransferAccepted,
    TransferFinished,
)
from rpcframework.returnvalues import S_OK
from rpcframework.transfer.bulk import write_archive

CASES = {
    # capture name prefix: (service, direction, file info, payload, result value)
    "TransferClient.sendFile(5": (
        "Bench/StorePlain",
        TransferDirection.FromClient,
        FileInfo("hello.txt", "", 5),
        b"hello",
        None,
    ),
    "TransferClient.receiveFile": (
        "Bench/StorePlain",
        TransferDirection.ToClient,
        FileInfo("hello.txt", ""),
        b"hello",
        None,
    ),
    "TransferClient.sendFile(3": ("Bench/EchoPlain", TransferDirection.FromClient, FileInfo("fid", "", 3), b"abc", 3),
}


def exchange(captures, prefix):
    return next(e for name, e in captures.items() if name.startswith(prefix))


def client_pair(service, direction):
    conn = ClientConnection(encoding=Encoding.JSON)
    proposal = Proposal(
        service=service,
        action_type=ActionType.FileTransfer,
        action_name=direction.value,
        extra_credentials=HOST_CREDENTIALS,
        client_version="9.1.22",
    )
    return conn, conn.send_proposal(proposal)


@pytest.mark.parametrize("prefix", list(CASES))
def test_client_side_replay(captures, prefix):
    """Our client, fed DIRAC's server bytes, sends exactly DIRAC's client bytes."""
    service, direction, info, payload, value = CASES[prefix]
    ex = exchange(captures, prefix)
    c2s, s2c = [frame(f) for f in ex.frames["C>S"]], [frame(f) for f in ex.frames["S>C"]]
    conn, proposal = client_pair(service, direction)
    assert proposal == c2s[0]
    conn.receive_data(s2c[0])
    assert isinstance(conn.next_event(), ProposalAccepted)
    machine = ClientTransfer(conn.hand_over())
    assert machine.start(info) == c2s[1]
    machine.receive_data(b"".join(s2c[1:]))  # everything the server sent, in one go
    assert machine.next_event() == TransferAccepted()
    sent = []
    if direction is TransferDirection.FromClient:
        sent.append(machine.send_chunk(payload))
        assert machine.next_event() == ChunkAcknowledged()
        sent.append(machine.send_end())
        assert machine.next_event() == TransferFinished(True, len(payload), hashlib.md5(payload).hexdigest())
    else:
        assert machine.next_event() == ChunkReceived(payload)
        assert machine.next_event() == TransferFinished(True, len(payload), hashlib.md5(payload).hexdigest())
        sent.append(machine.data_to_send())  # the ack of the chunk
    assert machine.next_event() == ResultReceived(S_OK(value))
    assert sent == c2s[2:]


@pytest.mark.parametrize("prefix", list(CASES))
def test_server_side_replay(captures, prefix):
    """Our server, fed DIRAC's client TCP chunks as captured, answers exactly DIRAC's server bytes."""
    _, direction, info, payload, value = CASES[prefix]
    ex = exchange(captures, prefix)
    s2c = [frame(f) for f in ex.frames["S>C"]]
    client_stream = b"".join(data for d, data in ex.chunks if d == "C>S")
    conn = ServerConnection()
    conn.receive_data(client_stream)
    assert isinstance(conn.next_event(), ProposalReceived)
    sent = [conn.accept()]
    machine = ServerTransfer(conn.hand_over())
    event = machine.next_event()
    assert isinstance(event, FileInfoReceived) and event.info.file_id == info.file_id
    sent.append(machine.accept())
    if direction is TransferDirection.FromClient:
        assert machine.next_event() == ChunkReceived(payload)
        assert machine.next_event() == TransferFinished(True, len(payload), hashlib.md5(payload).hexdigest())
        sent.append(machine.data_to_send())  # the lazily sent ack
    else:
        sent.append(machine.send_chunk(payload))
        assert machine.next_event() == ChunkAcknowledged()
        sent.append(machine.send_end())
        assert isinstance(machine.next_event(), TransferFinished)
    sent.append(machine.send_result(S_OK(value)))
    assert sent == s2c
    assert machine.done and machine.in_sync


@pytest.mark.parametrize(
    ("prefix", "direction", "sender"),
    [
        ("TransferClient.sendBulk", TransferDirection.BulkFromClient, "client"),
        ("TransferClient.receiveBulk", TransferDirection.BulkToClient, "server"),
    ],
)
def test_bulk_replay(captures, prefix, direction, sender, tmp_path):
    """The bulk captures are truncated (10 KiB of tar): every other frame byte for byte, the data frame by size."""
    ex = exchange(captures, prefix)
    c2s_sizes, s2c_sizes = ex.frame_sizes["C>S"], ex.frame_sizes["S>C"]
    (tmp_path / "a.txt").write_bytes(b"A")
    (tmp_path / "b.txt").write_bytes(b"BB")
    archive = io.BytesIO()
    assert write_archive([tmp_path / "a.txt", tmp_path / "b.txt"], archive, "") == ["a.txt", "b.txt"]
    tar = archive.getvalue()
    assert len(tar) == 10240  # what DIRAC sent: the same two members, uncompressed
    conn, proposal = client_pair("Bench/StorePlain", direction)
    assert proposal == frame(ex.frames["C>S"][0])
    conn.receive_data(frame(ex.frames["S>C"][0]))
    conn.next_event()
    client = ClientTransfer(conn.hand_over())
    info = FileInfo("bulk1.tar", "", -1 if direction is TransferDirection.BulkFromClient else None)
    assert client.start(info) == frame(ex.frames["C>S"][1])
    server_conn = ServerConnection()
    server_conn.receive_data(proposal)
    server_conn.next_event()
    server_conn.accept()
    server = ServerTransfer(server_conn.hand_over())
    server.receive_data(frame(ex.frames["C>S"][1]))
    assert isinstance(server.next_event(), FileInfoReceived)
    accepted = server.accept()
    assert accepted == frame(ex.frames["S>C"][1])
    client.receive_data(accepted)
    client.next_event()
    src, dst = (client, server) if sender == "client" else (server, client)
    chunk = src.send_chunk(tar)
    sizes = c2s_sizes if sender == "client" else s2c_sizes
    assert len(chunk) - len(b"13715:") == sizes[2] == 13715
    dst.receive_data(chunk)
    assert dst.next_event() == ChunkReceived(tar)
    dst.next_event()
    ack = dst.data_to_send()
    assert ack == frame(b'{"OK": true, "Value": null}')
    src.receive_data(ack)
    assert src.next_event() == ChunkAcknowledged()
    end = src.send_end()
    assert len(end) - len(b"66:") == sizes[3] == 66
    dst.receive_data(end)
    assert dst.next_event().checksum_ok
    result = server.send_result(S_OK())
    assert result == frame(ex.frames["S>C"][-1])


def test_capture_md5_matches_its_data(captures):
    """Sanity: the captured end message is the md5 of the captured chunk."""
    ex = exchange(captures, "TransferClient.sendFile(5")
    assert hashlib.md5(b"hello").hexdigest().encode() in ex.frames["C>S"][3]
