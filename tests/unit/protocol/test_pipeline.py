"""The ``pipeline`` extension on the sans-IO machines: negotiation, one write each way, refusals, goodbye."""

from __future__ import annotations

import pytest

from rpcframework.errors import ProtocolError
from rpcframework.protocol import (
    NEED_DATA,
    ArgumentsReceived,
    CallResult,
    ClientConnection,
    ConnectionClosed,
    ConnectionState,
    DelegatedIdentity,
    Extensions,
    Feature,
    LocalProtocolError,
    Proposal,
    ProposalAccepted,
    ProposalReceived,
    ProposalRefused,
    ServerConnection,
    encode_frame,
)
from rpcframework.returnvalues import S_ERROR, S_OK

OFFER = Extensions(features=frozenset({Feature.REUSE, Feature.KWARGS, Feature.PIPELINE}))
SERVER = Extensions(features=frozenset(Feature), idle_timeout=300.0)
ECHO = Proposal(service="Bench/Echo", action_name="echo", client_version="t")
ACK = encode_frame(b'{"OK": true, "Value": null}')


def _negotiated() -> tuple[ClientConnection, ServerConnection]:
    """A client and a server after a first (two round trip) exchange that negotiated ``pipeline``."""
    client, server = ClientConnection(offer=OFFER), ServerConnection(extensions=SERVER)
    server.receive_data(client.send_proposal(ECHO))
    assert isinstance(server.next_event(), ProposalReceived)
    client.receive_data(server.accept())
    accepted = client.next_event()
    assert isinstance(accepted, ProposalAccepted)
    server.receive_data(client.send_arguments(["first"]))
    assert server.next_event() == ArgumentsReceived(["first"], {})
    client.receive_data(server.send_result(S_OK("first")))
    assert client.next_event() == CallResult(S_OK("first"))
    assert client.pipeline and server.pipeline
    return client, server


def test_negotiation_announces_the_idle_timeout_in_the_ack():
    client, server = ClientConnection(offer=OFFER), ServerConnection(extensions=SERVER)
    server.receive_data(client.send_proposal(ECHO))
    server.next_event()
    ack = server.accept()
    assert ack == encode_frame(
        b'{"OK": true, "Value": {"rpcframework": {"version": 1, "features": ["kwargs", "pipeline", "reuse"], '
        b'"idle_timeout": 300.0}}}'
    )
    client.receive_data(ack)
    event = client.next_event()
    assert event == ProposalAccepted(Extensions(1, OFFER.features, 300.0))


def test_pipeline_is_never_accepted_without_reuse_nor_offered_by_a_dirac_mode_client():
    assert Feature.PIPELINE not in SERVER.negotiate(Extensions(features=frozenset({Feature.PIPELINE}))).features
    client, server = ClientConnection(offer=None), ServerConnection(extensions=SERVER)
    proposal_bytes = client.send_proposal(ECHO)
    assert b"pipeline" not in proposal_bytes and b"rpcframework" not in proposal_bytes
    server.receive_data(proposal_bytes)
    server.next_event()
    assert server.accept() == ACK  # DIRAC's ack: a DIRAC peer never sees an extension it did not ask for
    assert not server.pipeline


def test_one_write_each_way_and_the_ack_comes_with_the_result():
    client, server = _negotiated()
    request = client.send_call(ECHO, ["hello"])
    assert request.count(b'{"pipeline": true}') == 1  # the marked proposal, then the arguments frame
    server.receive_data(request)
    received = server.next_event()
    assert isinstance(received, ProposalReceived) and received.proposal.pipelined
    assert server.accept() == b""  # held back: it goes out with the result
    assert server.next_event() == ArgumentsReceived(["hello"], {})
    answer = server.send_result(S_OK("hello"))
    assert answer.startswith(ACK)
    client.receive_data(answer)
    assert client.next_event() == CallResult(S_OK("hello"))
    assert client.state is server.state is ConnectionState.IDLE


def test_keyword_arguments_and_identities_vary_per_call_on_one_connection():
    client, server = _negotiated()
    for number in range(3):
        proposal = Proposal(
            service="Bench/Echo",
            action_name="echo",
            extra_credentials=DelegatedIdentity(f"/CN=user{number}", "g"),
        )
        server.receive_data(client.send_call(proposal, [number], {"key": number}))
        received = server.next_event()
        assert received.proposal.extra_credentials == DelegatedIdentity(f"/CN=user{number}", "g")
        server.accept()
        assert server.next_event() == ArgumentsReceived([number], {"key": number})
        client.receive_data(server.send_result(S_OK(number)))
        assert client.next_event() == CallResult(S_OK(number))


def test_a_refused_pipelined_call_drops_its_arguments_unread_and_the_connection_stays_usable():
    client, server = _negotiated()
    server.receive_data(client.send_call(ECHO, ["never run"]))
    server.next_event()
    client.receive_data(server.refuse(S_ERROR(1111, "Unauthorized query")))
    refused = client.next_event()
    assert isinstance(refused, ProposalRefused) and refused.error["Errno"] == 1111
    assert client.state is ConnectionState.IDLE
    # The arguments frame is skipped: no ArgumentsReceived, the next pipelined call is served normally.
    assert server.next_event() is NEED_DATA
    server.receive_data(client.send_call(ECHO, ["next"]))
    assert isinstance(server.next_event(), ProposalReceived)
    server.accept()
    assert server.next_event() == ArgumentsReceived(["next"], {})


def test_a_refusal_arriving_in_pieces_still_skips_exactly_one_frame():
    client, server = _negotiated()
    request = client.send_call(ECHO, ["x" * 1000])
    server.receive_data(request[:50])
    assert server.next_event() is NEED_DATA
    server.receive_data(request[50:60])
    colon = request.index(b":")
    proposal_end = colon + 1 + int(request[:colon])
    server.receive_data(request[60:proposal_end])
    assert isinstance(server.next_event(), ProposalReceived)
    server.refuse(S_ERROR("no"))
    for byte in request[proposal_end:]:
        server.receive_data(bytes([byte]))
        assert server.next_event() is NEED_DATA
    assert server.state is ConnectionState.IDLE


def test_a_pipelined_proposal_without_the_extension_is_a_protocol_error():
    client, _server = _negotiated()
    plain = ServerConnection(extensions=SERVER)
    plain.receive_data(client.send_call(ECHO, ["smuggled"]))
    with pytest.raises(ProtocolError):
        plain.next_event()
    assert b"Invalid action proposal" in plain.data_to_send()


def test_send_call_needs_the_extension():
    client = ClientConnection(offer=OFFER)
    with pytest.raises(LocalProtocolError):
        client.send_call(ECHO, [])


def test_goodbye_tells_the_client_its_call_was_not_read():
    client, server = _negotiated()
    client.send_call(ECHO, ["in flight"])  # crosses the goodbye on the wire
    goodbye = server.goodbye()
    assert b'"goodbye": true' in goodbye and server.state is ConnectionState.CLOSED
    client.receive_data(goodbye)
    assert isinstance(client.next_event(), ConnectionClosed)
    assert client.state is ConnectionState.CLOSED


def test_no_goodbye_without_pipeline_or_mid_exchange():
    server = ServerConnection(extensions=SERVER)
    assert server.goodbye() == b""  # nothing negotiated (a DIRAC peer)
    client, server = _negotiated()
    server.receive_data(client.send_call(ECHO, ["x"]))
    server.next_event()
    assert server.goodbye() == b""  # an exchange is in progress: its answer is owed


def _serve_general(client: ClientConnection, server: ServerConnection, proposal: Proposal, value: object) -> Proposal:
    """One pipelined call through the general machine (what the worker does for a proposal it must authorize)."""
    server.receive_data(client.send_call(proposal, [value]))
    received = server.next_event()
    assert isinstance(received, ProposalReceived)
    server.accept()
    assert server.next_event() == ArgumentsReceived([value], {})
    client.receive_data(server.send_result(S_OK(value)))
    assert client.next_event() == CallResult(S_OK(value))
    return received.proposal


def _serve_inline(client: ClientConnection, server: ServerConnection, proposal: Proposal, value: object) -> Proposal:
    """One pipelined call through parse_pipelined/take_pipelined (the worker's steady state)."""
    parsed = server.parse_pipelined(client.send_call(proposal, [value]))
    assert parsed is not None
    assert server.take_pipelined(*parsed) == ([value], {})
    assert client.receive_result(server.send_result(S_OK(value))) == S_OK(value)
    return parsed[0]


def test_parse_pipelined_reuses_the_last_frame_it_accepted_and_looks_up_any_other():
    client, server = _negotiated()
    other = Proposal(service="Bench/Echo", action_name="other", client_version="t")
    first = _serve_general(client, server, ECHO, 1)
    assert _serve_inline(client, server, ECHO, 2) is first  # looked up, then remembered whole
    assert _serve_inline(client, server, ECHO, 3) is first  # the remembered frame
    second = _serve_general(client, server, other, 4)
    assert _serve_inline(client, server, other, 5) is second
    assert _serve_inline(client, server, ECHO, 6) is first  # not the remembered one: looked up again
    request = client.send_call(ECHO, [7])
    assert server.parse_pipelined(request[:-1]) is None  # the remembered proposal, but the arguments are cut short
    assert server.parse_pipelined(request + b"2:[]") is None  # or followed by more bytes
    assert server.parse_pipelined(request) is not None


def test_parse_pipelined_after_the_proposal_cache_was_emptied_returns_the_new_parse():
    client, server = _negotiated()
    first = _serve_general(client, server, ECHO, 0)
    assert _serve_inline(client, server, ECHO, 1) is first
    for number in range(40):  # more distinct proposals than the cache holds: it is emptied on the way
        proposal = Proposal(service="Bench/Echo", action_name=f"m{number}", client_version="t")
        _serve_general(client, server, proposal, number)
    again = _serve_general(client, server, ECHO, 2)
    assert again is not first and again == first  # the same bytes parsed anew
    assert _serve_inline(client, server, ECHO, 3) is again  # the object the general path authorized, not the old one
