"""ClientConnection / ServerConnection driven against each other through bytes (h11's ConnectionPair style)."""

from __future__ import annotations

import datetime
import time

import pytest

from rpcframework.codec import Encoding
from rpcframework.errors import CodecError, ConnectionClosedError, ProtocolError, UnexpectedMessageError
from rpcframework.protocol.events import (
    NEED_DATA,
    PAUSED,
    ArgumentsReceived,
    CallResult,
    ConnectionClosed,
    ConnectionState,
    LocalProtocolError,
    PongReceived,
    ProposalAccepted,
    ProposalReceived,
    ProposalRefused,
)
from rpcframework.protocol.framing import encode_frame, encode_keepalive_frame
from rpcframework.protocol.messages import ActionType, Extensions, Feature, Proposal
from rpcframework.protocol.rpc import ClientConnection, ServerConnection
from rpcframework.returnvalues import S_ERROR, S_OK

PROPOSAL = Proposal(service="Bench/Echo", action_name="echo", client_version="rpcframework/0.1")
ALL = Extensions()


def ack(client, server, proposal=PROPOSAL, extensions=None):
    server.receive_data(client.send_proposal(proposal))
    event = server.next_event()
    assert isinstance(event, ProposalReceived)
    client.receive_data(server.accept(extensions))
    accepted = client.next_event()
    assert isinstance(accepted, ProposalAccepted)
    return event, accepted


def call(client, server, args, kwargs=None, result=None):
    ack(client, server)
    server.receive_data(client.send_arguments(args, kwargs))
    event = server.next_event()
    assert isinstance(event, ArgumentsReceived)
    client.receive_data(server.send_result(S_OK(event.args) if result is None else result))
    outcome = client.next_event()
    assert isinstance(outcome, CallResult)
    return event, outcome.result


def test_dirac_mode_single_exchange_then_closed():
    client, server = ClientConnection(), ServerConnection(extensions=ALL)
    event, result = call(client, server, ["hi", 3])
    assert event == ArgumentsReceived(["hi", 3], {})
    assert result == S_OK(["hi", 3])
    assert client.state is server.state is ConnectionState.CLOSED
    assert client.extensions is None and server.extensions is None
    assert client.next_event() == ConnectionClosed() == server.next_event()


def test_server_never_sends_extensions_to_a_client_that_did_not_offer():
    client, server = ClientConnection(), ServerConnection(extensions=ALL)
    server.receive_data(client.send_proposal(PROPOSAL))
    server.next_event()
    assert server.accept() == b'27:{"OK": true, "Value": null}'
    assert server.accept.__self__.extensions is None


def test_negotiated_ack_has_the_documented_wire_form():
    client = ClientConnection(offer=ALL)
    server = ServerConnection(extensions=Extensions(1, frozenset({Feature.REUSE, Feature.KWARGS})))
    server.receive_data(client.send_proposal(PROPOSAL))
    event = server.next_event()
    assert event.proposal.extensions == ALL
    data = server.accept()
    assert data == encode_frame(
        b'{"OK": true, "Value": {"rpcframework": {"version": 1, "features": ["kwargs", "reuse"]}}}'
    )
    client.receive_data(data)
    negotiated = Extensions(1, frozenset({Feature.REUSE, Feature.KWARGS}))
    assert client.next_event() == ProposalAccepted(negotiated)
    assert client.extensions == server.extensions == negotiated


def test_reuse_many_calls_on_one_connection_with_keyword_arguments():
    client, server = ClientConnection(offer=ALL), ServerConnection(extensions=ALL)
    for i in range(5):
        event, result = call(client, server, [i], {"scale": 2})
        assert event.kwargs == {"scale": 2}
        assert result == S_OK([i])
        assert client.state is server.state is ConnectionState.IDLE
    # Only the first proposal carries the offer.
    assert b'{"rpcframework"' not in client.send_proposal(PROPOSAL)


def test_keyword_arguments_need_the_extension():
    client, server = ClientConnection(), ServerConnection()
    ack(client, server)
    with pytest.raises(LocalProtocolError, match="kwargs"):
        client.send_arguments([1], {"a": 1})
    assert client.state is ConnectionState.ACCEPTED
    client.send_arguments([1], {})  # empty kwargs are fine


def test_typed_encoding_keeps_tuples_int_keys_and_microseconds():
    client, server = ClientConnection(offer=ALL), ServerConnection(extensions=ALL)
    value = (1, {2: "x"}, datetime.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=datetime.UTC), b"\x00")
    ack(client, server)
    assert client.data_encoding is Encoding.TYPED
    server.receive_data(client.send_arguments([value]))
    event = server.next_event()
    assert event.args == [value]
    client.receive_data(server.send_result(S_OK(value)))
    assert client.next_event().result == S_OK(value)


def test_dencode_client_gets_dencode_replies():
    client, server = ClientConnection(encoding=Encoding.DENCODE), ServerConnection()
    server.receive_data(client.send_proposal(PROPOSAL))
    event = server.next_event()
    assert event.encoding is Encoding.DENCODE
    assert server.accept() == b"18:ds2:OKb1s5:Valuene"


def test_refusal_is_sanitized_and_closes():
    client, server = ClientConnection(), ServerConnection()
    server.receive_data(client.send_proposal(PROPOSAL))
    server.next_event()
    leaky = {
        "OK": False,
        "Errno": 1111,
        "Message": "Unauthorized query ( 1111 : Unauthorized query)",
        "CallStack": ["x"],
    }
    data = server.refuse(leaky)
    assert b"CallStack" not in data
    client.receive_data(data)
    event = client.next_event()
    assert isinstance(event, ProposalRefused) and event.error["Errno"] == 1111
    assert client.state is server.state is ConnectionState.CLOSED


def test_refusal_on_a_reused_connection_keeps_it():
    client, server = ClientConnection(offer=ALL), ServerConnection(extensions=ALL)
    call(client, server, [1])
    server.receive_data(client.send_proposal(PROPOSAL))
    server.next_event()
    client.receive_data(server.refuse(S_ERROR("Unknown method echo")))
    assert isinstance(client.next_event(), ProposalRefused)
    assert client.state is server.state is ConnectionState.IDLE
    call(client, server, [2])


def test_result_with_callstack_is_stripped():
    client, server = ClientConnection(), ServerConnection()
    _, result = call(client, server, [], result={"OK": False, "Errno": 0, "Message": "boom", "CallStack": ["/a"]})
    assert result == {"OK": False, "Errno": 0, "Message": "boom"}


def test_unencodable_result_leaves_the_state_so_an_error_can_be_sent():
    client, server = ClientConnection(), ServerConnection()
    ack(client, server)
    server.receive_data(client.send_arguments([]))
    server.next_event()
    with pytest.raises(CodecError):
        server.send_result(S_OK(object()))
    assert server.state is ConnectionState.CALLING
    client.receive_data(server.send_result(S_ERROR("cannot encode the result")))
    assert client.next_event().result["Message"] == "cannot encode the result"


def test_server_pauses_until_it_acts():
    client, server = ClientConnection(), ServerConnection()
    assert server.next_event() is NEED_DATA
    server.receive_data(client.send_proposal(PROPOSAL))
    assert isinstance(server.next_event(), ProposalReceived)
    assert server.next_event() is PAUSED
    server.receive_data(b"5:extra")
    assert server.next_event() is PAUSED


def test_keepalive_ping_before_proposal_and_while_idle():
    client, server = ClientConnection(offer=ALL), ServerConnection(extensions=ALL)
    server.receive_data(client.send_keepalive("p1"))
    assert server.next_event() is NEED_DATA
    pong = server.data_to_send()
    assert pong == b'dka52:{"OK": true, "Value": {"id": "p1", "kaping": false}}'
    client.receive_data(pong)
    assert client.next_event() == PongReceived("p1")
    call(client, server, [1])
    # Idle on a reused connection: pings keep it alive, nothing else changes.
    server.receive_data(client.send_keepalive("p2"))
    assert server.next_event() is NEED_DATA
    client.receive_data(server.data_to_send())
    assert client.next_event() == PongReceived("p2")
    assert server.state is ConnectionState.IDLE
    assert server.data_to_send() == b""


def test_client_answers_server_pings_in_any_state():
    client, server = ClientConnection(), ServerConnection()
    client.send_proposal(PROPOSAL)
    client.receive_data(encode_keepalive_frame(b'{"OK": true, "Value": {"id": "s", "kaping": true}}'))
    assert client.next_event() is NEED_DATA
    assert client.data_to_send().startswith(b"dka")
    del server


def test_bad_keepalive_is_a_protocol_error():
    server = ServerConnection()
    server.receive_data(encode_keepalive_frame(b'{"OK": true, "Value": 3}'))
    with pytest.raises(ProtocolError):
        server.next_event()
    assert server.state is ConnectionState.ERROR
    with pytest.raises(LocalProtocolError):
        server.next_event()


def test_eof_handling():
    server = ServerConnection()
    server.receive_data(b"")
    assert server.next_event() == ConnectionClosed()
    # Mid-frame.
    server = ServerConnection()
    server.receive_data(b"10:abc")
    server.receive_data(b"")
    with pytest.raises(ConnectionClosedError):
        server.next_event()
    # Client waiting for a result.
    client, server = ClientConnection(), ServerConnection()
    ack(client, server)
    client.send_arguments([])
    client.receive_data(b"")
    with pytest.raises(ConnectionClosedError):
        client.next_event()
    assert client.state is ConnectionState.ERROR


def test_idle_reused_connection_closed_by_the_server_is_clean():
    client, server = ClientConnection(offer=ALL), ServerConnection(extensions=ALL)
    call(client, server, [1])
    client.receive_data(b"")
    assert client.next_event() == ConnectionClosed()
    assert client.state is ConnectionState.CLOSED


def test_unexpected_messages():
    client, server = ClientConnection(), ServerConnection()
    client.receive_data(encode_frame(b'{"OK": true, "Value": null}'))
    with pytest.raises(UnexpectedMessageError):
        client.next_event()
    client = ClientConnection()
    client.send_proposal(PROPOSAL)
    client.receive_data(encode_frame(b'{"OK": true, "Value": {"delegate": "PEM"}}'))
    with pytest.raises(UnexpectedMessageError):
        client.next_event()
    client = ClientConnection(offer=Extensions(1, frozenset({Feature.REUSE})))
    client.send_proposal(PROPOSAL)
    client.receive_data(encode_frame(b'{"OK": true, "Value": {"rpcframework": {"version": 1, "features": ["typed"]}}}'))
    with pytest.raises(ProtocolError, match="not offered"):
        client.next_event()
    del server


def test_local_misuse_raises_local_protocol_error():
    client, server = ClientConnection(), ServerConnection()
    with pytest.raises(LocalProtocolError):
        client.send_arguments([])
    with pytest.raises(LocalProtocolError):
        server.accept()
    with pytest.raises(LocalProtocolError):
        server.send_result(S_OK())
    client.send_proposal(PROPOSAL)
    with pytest.raises(LocalProtocolError):
        client.send_proposal(PROPOSAL)
    with pytest.raises(ValueError):
        ClientConnection(encoding=Encoding.TYPED)


def test_proposal_size_cap_then_larger_argument_cap():
    client = ClientConnection()
    server = ServerConnection(max_proposal_size=200, max_message_size=10_000)
    with pytest.raises(ProtocolError):
        server.receive_data(b"201:")
    server = ServerConnection(max_proposal_size=200, max_message_size=10_000)
    ack(client, server)
    server.receive_data(client.send_arguments(["x" * 5000]))
    assert isinstance(server.next_event(), ArgumentsReceived)


def test_file_transfer_is_handed_over_and_returns():
    client, server = ClientConnection(offer=ALL), ServerConnection(extensions=ALL)
    proposal = Proposal(service="S/C", action_type=ActionType.FileTransfer, action_name="FromClient")
    ack(client, server, proposal)
    assert client.state is server.state is ConnectionState.HANDED_OVER
    assert server.next_event() is PAUSED and client.next_event() is PAUSED
    handover = server.hand_over()
    assert handover.encoding is Encoding.TYPED and handover.proposal.action_name == "FromClient"
    with pytest.raises(LocalProtocolError):
        server.send_result(S_OK())
    server.finish_hand_over()
    client.finish_hand_over()
    assert client.state is server.state is ConnectionState.IDLE  # reuse negotiated
    call(client, server, [1])


def test_bad_arguments_get_diracs_reply_and_error_state():
    client, server = ClientConnection(), ServerConnection()
    ack(client, server)
    server.receive_data(encode_frame(b'{"OK": true, "Value": "nope"}'))
    with pytest.raises(ProtocolError):
        server.next_event()
    assert server.data_to_send() == b'67:{"OK": false, "Errno": 0, "Message": "Error in parameter check: 0"}'


def test_reused_connection_call_cost_is_microseconds():
    client, server = ClientConnection(offer=ALL), ServerConnection(extensions=ALL)
    call(client, server, ["warm"])
    n = 2000
    start = time.perf_counter()
    for _ in range(n):
        call(client, server, ["hello"])
    per_call = (time.perf_counter() - start) / n
    assert per_call < 500e-6  # generous for CI; measured numbers are in docs/protocol.md
