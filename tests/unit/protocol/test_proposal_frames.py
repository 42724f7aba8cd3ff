"""ProposalFrames: the encoded proposals shared by a client's connections (one per call in DIRAC's way)."""

from __future__ import annotations

from rpcframework.codec import Encoding
from rpcframework.protocol.events import ProposalAccepted, ProposalReceived
from rpcframework.protocol.messages import Extensions, Proposal
from rpcframework.protocol.rpc import ClientConnection, ProposalFrames, ServerConnection

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
