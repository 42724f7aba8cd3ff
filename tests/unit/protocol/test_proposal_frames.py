"""ProposalFrames and ProposalEvents: a client's encoded proposals and a server's parsed ones, shared by their
connections (DIRAC clients open one per call)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from rpcframework.codec import CodecLimits, Encoding
from rpcframework.errors import ProtocolError
from rpcframework.protocol.events import ProposalAccepted, ProposalReceived
from rpcframework.protocol.messages import Extensions, Proposal, TraceContext
from rpcframework.protocol.rpc import ClientConnection, ProposalEvents, ProposalFrames, ServerConnection
from rpcframework.returnvalues import S_OK

PROPOSAL = Proposal(service="Bench/Echo", action_name="echo", client_version="rpcframework/0.1")
OFFER = Extensions()


def received(data: bytes, extensions: Extensions | None = OFFER) -> ProposalReceived:
    server = ServerConnection(extensions=extensions)
    server.receive_data(data)
    event = server.next_event()
    assert isinstance(event, ProposalReceived)
    return event


def test_connections_sharing_the_table_send_the_same_bytes_each_with_its_own_offer():
    frames = ProposalFrames()
    first = ClientConnection(offer=OFFER, frames=frames).send_proposal(PROPOSAL)
    second = ClientConnection(offer=OFFER, frames=frames).send_proposal(PROPOSAL)
    assert second == first
    assert received(second).proposal.extensions == OFFER  # every new connection's first proposal offers
    dirac = ClientConnection(offer=None, frames=frames).send_proposal(PROPOSAL)
    assert dirac != first and received(dirac).proposal.extensions is None
    assert len(frames.frames) == 2  # one entry per proposal as sent, whatever the number of connections


def test_a_connection_with_another_encoding_does_not_use_the_table():
    frames = ProposalFrames()
    json_bytes = ClientConnection(frames=frames).send_proposal(PROPOSAL)
    dencode = ClientConnection(encoding=Encoding.DENCODE, frames=frames).send_proposal(PROPOSAL)
    assert dencode != json_bytes
    assert received(dencode, None).proposal == received(json_bytes, None).proposal
    assert len(frames.frames) == 1


def test_the_ack_of_a_shared_connection_is_still_recognised():
    frames = ProposalFrames()
    for _ in range(2):  # the second connection's ack constant comes from the per-encoding cache
        client = ClientConnection(frames=frames)
        server = ServerConnection(extensions=None)
        server.receive_data(client.send_proposal(PROPOSAL))
        assert isinstance(server.next_event(), ProposalReceived)
        client.receive_data(server.accept())
        assert isinstance(client.next_event(), ProposalAccepted)


# -- the server's side: ProposalEvents ----------------------------------------------------------------------------


def proposal_bytes(proposal: Proposal) -> bytes:
    return ClientConnection().send_proposal(proposal)


def test_servers_sharing_the_table_parse_a_proposal_once():
    events = ProposalEvents()
    first, second = (ServerConnection(proposals=events) for _ in range(2))
    seen = []
    for server in (first, second):
        server.receive_data(proposal_bytes(PROPOSAL))
        event = server.next_event()
        assert isinstance(event, ProposalReceived) and event.proposal == PROPOSAL
        seen.append(event.proposal)
    assert seen[0] is seen[1]  # the second connection's proposal came from the table
    other_limits = ServerConnection(proposals=events, limits=CodecLimits(max_depth=50))
    other_limits.receive_data(proposal_bytes(PROPOSAL))
    event = other_limits.next_event()
    assert isinstance(event, ProposalReceived) and event.proposal is not seen[0]


def test_a_shared_pipelined_proposal_is_still_refused_where_pipeline_was_not_negotiated():
    events = ProposalEvents()
    marked = ClientConnection()._frame(S_OK(replace(PROPOSAL, pipelined=True).to_wire()), Encoding.JSON)
    for _ in range(2):  # the second connection finds the parse in the table: the check still applies
        server = ServerConnection(proposals=events)
        server.receive_data(marked)
        with pytest.raises(ProtocolError):
            server.next_event()


def test_traced_proposals_are_kept_without_their_trace():
    """A traced client sends a new trace context with every call: the server keeps the proposal by the bytes before
    the trace (protocol/traced.py) and hands out the same proposal object, the trace in the event."""
    events = ProposalEvents()
    first = TraceContext("00-" + "1" * 32 + "-" + "2" * 16 + "-01")
    second = TraceContext("00-" + "3" * 32 + "-" + "4" * 16 + "-00")
    seen = []
    for trace in (first, second):
        server = ServerConnection(extensions=OFFER, proposals=events)
        server.receive_data(ClientConnection(offer=OFFER).send_proposal(replace(PROPOSAL, trace_context=trace)))
        event = server.next_event()
        assert isinstance(event, ProposalReceived) and event.trace == trace
        assert event.proposal.trace_context is None  # the server's events carry the trace apart
        seen.append(event.proposal)
    assert seen[0] is seen[1] and len(events.traced) == 1 and not events.events
