"""The ``pipeline`` extension on the sans-IO machines: negotiation, one write each way, refusals, goodbye."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rpcframework.codec import Encoding, encode
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
    PongReceived,
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


def _serve(client: ClientConnection, server: ServerConnection, proposal: Proposal, value: object) -> Proposal:
    """One pipelined call through the machines, as the worker and the client drive them."""
    server.receive_data(client.send_call(proposal, [value]))
    received = server.next_event()
    assert isinstance(received, ProposalReceived)
    assert server.accept() == b""
    assert server.next_event() == ArgumentsReceived([value], {})
    client.receive_data(server.send_result(S_OK(value)))
    assert client.next_event() == CallResult(S_OK(value))
    return received.proposal


def test_a_repeated_proposal_is_the_same_object_until_the_cache_is_emptied():
    """The server's authorization cache is keyed by the proposal object: the same bytes must give the same object,
    and after the proposal cache was emptied, a new (equal) object, so authorization runs again for it."""
    client, server = _negotiated()
    other = Proposal(service="Bench/Echo", action_name="other", client_version="t")
    first = _serve(client, server, ECHO, 1)
    assert _serve(client, server, ECHO, 2) is first
    second = _serve(client, server, other, 3)
    assert second is not first and _serve(client, server, other, 4) is second
    assert _serve(client, server, ECHO, 5) is first
    for number in range(40):  # more distinct proposals than the cache holds: it is emptied on the way
        _serve(client, server, Proposal(service="Bench/Echo", action_name=f"m{number}", client_version="t"), number)
    again = _serve(client, server, ECHO, 6)
    assert again is not first and again == first


_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=10,
)


def _pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    return [data[start:end] for start, end in itertools.pairwise(points) if end > start]


def _result_frame(value: object) -> bytes:
    return encode_frame(encode(S_OK(value), Encoding.JSON))


def _serve_pieces(server: ServerConnection, pieces: list[bytes]) -> tuple[list[object], list[bytes]]:
    """Feed ``pieces`` to ``server``, answering each call with its own argument: (arguments seen, each call's
    answer with the pongs written before it in front)."""
    seen: list[object] = []
    answers: list[bytes] = []
    pongs = b""
    for piece in pieces:
        server.receive_data(piece)
        for _ in range(20):
            event = server.next_event()
            pongs += server.data_to_send()
            if isinstance(event, ProposalReceived):
                assert event.proposal.action_name == "echo" and server.accept() == b""
            elif isinstance(event, ArgumentsReceived):
                seen.append(event.args[0])
                answers.append(pongs + server.send_result(S_OK(event.args[0])))
                pongs = b""
            else:
                assert event is NEED_DATA
                break
    return seen, answers


def _results_of(client: ClientConnection, pieces: list[bytes]) -> list[object]:
    results: list[object] = []
    for piece in pieces:
        client.receive_data(piece)
        for _ in range(5):
            event = client.next_event()
            if isinstance(event, CallResult):
                results.append(event.result)
            elif event is NEED_DATA:
                break
            else:
                assert isinstance(event, PongReceived)
    return results


@settings(max_examples=60, deadline=None)
@given(values=st.lists(_VALUES, min_size=1, max_size=4), cuts=st.lists(st.integers(0, 10_000), max_size=12))
def test_any_split_or_coalescing_of_pipelined_calls_gives_the_same_events(values, cuts):
    """The one parser on each side. Server: the requests of several calls (a keepalive ping among them) in one
    stream, cut anywhere and fed in those pieces, make the events of whole writes, call after call. Client: each
    answer (the ping's pong in front of one of them) cut the same way makes the same result."""
    writer, _ = _negotiated()  # writes the requests the client below would write, one call after the other
    client, server = _negotiated()
    requests = b""
    for number, value in enumerate(values):
        requests += (writer.send_keepalive("k") if number == 1 else b"") + writer.send_call(ECHO, [value])
        writer.receive_data(ACK + _result_frame(value))
        assert writer.next_event() == CallResult(S_OK(value))
    seen, answers = _serve_pieces(server, _pieces(requests, cuts))
    assert seen == values and server.state is ConnectionState.IDLE
    for value, answer in zip(values, answers, strict=True):
        client.send_call(ECHO, [value])
        assert _results_of(client, _pieces(answer, cuts)) == [S_OK(value)]
        assert client.state is ConnectionState.IDLE


def test_a_result_split_across_reads_and_a_pong_in_front_of_it():
    """The client's one parser: a pong, then the ack and the result cut into single bytes."""
    client, server = _negotiated()
    ping = client.send_keepalive("p")
    server.receive_data(ping + client.send_call(ECHO, ["v"]))
    assert isinstance(server.next_event(), ProposalReceived)
    server.accept()
    pong = server.data_to_send()
    assert pong.startswith(b"dka")
    assert server.next_event() == ArgumentsReceived(["v"], {})
    answer = pong + server.send_result(S_OK("v"))
    for byte in answer[:-1]:
        client.receive_data(bytes([byte]))
        event = client.next_event()
        assert event is NEED_DATA or isinstance(event, PongReceived)
    client.receive_data(answer[-1:])
    assert client.next_event() == CallResult(S_OK("v"))


def test_the_state_machines_are_the_only_parser():
    """No second way through the same bytes beside next_event (issue 20): the steady state is the machines' path."""
    for name in ("receive_result",):
        assert not hasattr(ClientConnection, name)
    for name in ("parse_pipelined", "take_pipelined"):
        assert not hasattr(ServerConnection, name)
