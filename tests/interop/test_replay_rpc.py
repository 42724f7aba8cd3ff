"""Our state machines replay DIRAC 9.1.22 RPC and transfer captures byte for byte (JSON and DEncode)."""

from __future__ import annotations

import pytest

from rpcframework.codec import Encoding, decode, encode
from rpcframework.protocol.events import (
    PAUSED,
    ArgumentsReceived,
    CallResult,
    ConnectionState,
    ProposalAccepted,
    ProposalReceived,
)
from rpcframework.protocol.framing import FrameDecoder, encode_frame
from rpcframework.protocol.messages import (
    HOST_CREDENTIALS,
    ActionType,
    FileInfo,
    Proposal,
    TransferDirection,
)
from rpcframework.protocol.rpc import ClientConnection, ServerConnection
from rpcframework.protocol.transfer_data import (
    TransferChunk,
    TransferEnd,
    parse_transfer_message,
    transfer_chunk_message,
    transfer_end_message,
)

ENCODINGS = {"dip_json": Encoding.JSON, "dip_dencode": Encoding.DENCODE}


def _rpc_exchanges(request, fixture):
    return [e for e in request.getfixturevalue(fixture) if e.name.startswith("RPC")]


def _captured_proposal(method: str, action_type: ActionType = ActionType.RPC) -> Proposal:
    return Proposal(
        service="Bench/EchoPlain",
        action_name=method,
        action_type=action_type,
        setup="None",
        vo="unknown",
        extra_credentials=HOST_CREDENTIALS,
        client_version="9.1.22",
    )


@pytest.mark.parametrize("fixture", sorted(ENCODINGS))
def test_captured_proposals_parse_and_reserialize(request, fixture):
    encoding = ENCODINGS[fixture]
    for exchange in request.getfixturevalue(fixture):
        payload = exchange.frames["C>S"][0]
        message, detected = decode(payload)
        assert detected is encoding
        proposal = Proposal.from_wire(message["Value"])
        assert proposal.service == "Bench/EchoPlain"
        assert proposal.setup == "None" and proposal.vo == "unknown"
        assert proposal.extra_credentials == HOST_CREDENTIALS
        assert proposal.client_version == "9.1.22" and proposal.extensions is None
        assert encode({"OK": True, "Value": proposal.to_wire()}, encoding) == payload


@pytest.mark.parametrize("fixture", sorted(ENCODINGS))
def test_server_machine_replays_rpc_captures(request, fixture):
    encoding = ENCODINGS[fixture]
    for exchange in _rpc_exchanges(request, fixture):
        client_chunks = [data for d, data in exchange.chunks if d == "C>S"]
        server_chunks = [data for d, data in exchange.chunks if d == "S>C"]
        server = ServerConnection()
        server.receive_data(client_chunks[0])
        event = server.next_event()
        assert isinstance(event, ProposalReceived) and event.encoding is encoding
        assert event.proposal == _captured_proposal(event.proposal.action_name)
        assert server.next_event() is PAUSED
        assert server.accept() == server_chunks[0]
        server.receive_data(client_chunks[1])
        event = server.next_event()
        assert isinstance(event, ArgumentsReceived) and event.kwargs == {}
        # The handler returns what DIRAC's handler returned; our bytes must equal DIRAC's.
        result, _ = decode(exchange.frames["S>C"][1], encoding)
        assert server.send_result(result) == server_chunks[1], exchange.name
        assert server.state is ConnectionState.CLOSED
        assert server.data_to_send() == b""


@pytest.mark.parametrize("fixture", sorted(ENCODINGS))
def test_client_machine_replays_rpc_captures(request, fixture):
    encoding = ENCODINGS[fixture]
    for exchange in _rpc_exchanges(request, fixture):
        client_chunks = [data for d, data in exchange.chunks if d == "C>S"]
        server_chunks = [data for d, data in exchange.chunks if d == "S>C"]
        method = decode(exchange.frames["C>S"][0])[0]["Value"][1][1]
        args = decode(exchange.frames["C>S"][1])[0]["Value"]
        client = ClientConnection(encoding=encoding)
        assert client.send_proposal(_captured_proposal(method)) == client_chunks[0]
        client.receive_data(server_chunks[0])
        assert client.next_event() == ProposalAccepted(None)
        assert client.send_arguments(args) == client_chunks[1]
        client.receive_data(server_chunks[1])
        event = client.next_event()
        assert isinstance(event, CallResult)
        assert event.result == decode(exchange.frames["S>C"][1])[0]
        assert client.state is ConnectionState.CLOSED


def test_client_offering_extensions_falls_back_against_dirac_ack(dip_json):
    from rpcframework.protocol.messages import Extensions

    exchange = dip_json[0]
    server_chunks = [data for d, data in exchange.chunks if d == "S>C"]
    client = ClientConnection(offer=Extensions())
    sent = client.send_proposal(_captured_proposal("echo"))
    assert b'"rpcframework"' in sent
    client.receive_data(server_chunks[0])  # DIRAC acks null
    assert client.next_event() == ProposalAccepted(None)
    client.send_arguments(["hello"])
    client.receive_data(server_chunks[1])
    assert isinstance(client.next_event(), CallResult)
    assert client.state is ConnectionState.CLOSED  # one call per connection with DIRAC


def _transfer(transfer_json, name):
    return next(e for e in transfer_json if e.name.startswith(name))


def test_transfer_send_file_replay(transfer_json):
    exchange = _transfer(transfer_json, "TransferClient.sendFile")
    c2s, s2c = exchange.frames["C>S"], exchange.frames["S>C"]
    server = ServerConnection()
    server.receive_data(exchange.stream("C>S"))
    event = server.next_event()
    assert isinstance(event, ProposalReceived)
    assert event.proposal.transfer_direction is TransferDirection.FromClient
    assert event.proposal.service == "Bench/StorePlain"
    assert server.accept() == encode_frame(s2c[0])
    assert server.state is ConnectionState.HANDED_OVER
    assert server.next_event() is PAUSED
    # The transfer phase continues on the same decoder, which already holds the rest of the stream.
    handover = server.hand_over()
    messages = _drain(handover.decoder, handover.encoding)
    info = FileInfo.from_wire(messages[0], TransferDirection.FromClient)
    assert info == FileInfo("hello.txt", "", 5)
    assert encode({"OK": True, "Value": info.to_wire(TransferDirection.FromClient)}) == c2s[1]
    assert parse_transfer_message(messages[1]) == TransferChunk(b"hello")
    assert parse_transfer_message(messages[2]) == TransferEnd("5d41402abc4b2a76b9719d911017c592")
    assert encode(transfer_chunk_message(b"hello")) == c2s[2]
    assert encode(transfer_end_message("5d41402abc4b2a76b9719d911017c592")) == c2s[3]
    server.finish_hand_over()
    assert server.state is ConnectionState.CLOSED


def test_transfer_receive_file_replay(transfer_json):
    exchange = _transfer(transfer_json, "TransferClient.receiveFile")
    client = ClientConnection()
    proposal = Proposal(
        service="Bench/StorePlain",
        action_type=ActionType.FileTransfer,
        action_name="ToClient",
        extra_credentials=HOST_CREDENTIALS,
        client_version="9.1.22",
    )
    assert client.send_proposal(proposal) == encode_frame(exchange.frames["C>S"][0])
    client.receive_data(exchange.stream("S>C"))
    assert client.next_event() == ProposalAccepted(None)
    assert client.state is ConnectionState.HANDED_OVER
    handover = client.hand_over()
    assert handover.proposal.transfer_direction is TransferDirection.ToClient
    messages = _drain(handover.decoder, handover.encoding)
    assert messages[0] == {"OK": True, "Value": "Accepted"}
    assert parse_transfer_message(messages[1]) == TransferChunk(b"hello")
    assert isinstance(parse_transfer_message(messages[2]), TransferEnd)
    info = FileInfo("hello.txt", "")
    assert encode({"OK": True, "Value": info.to_wire(TransferDirection.ToClient)}) == exchange.frames["C>S"][1]


def _drain(decoder: FrameDecoder, encoding: Encoding) -> list[object]:
    messages = []
    while (frame := decoder.next_frame()) is not None:
        messages.append(decode(frame.payload, encoding)[0])
    return messages
