"""Traced pipelined proposals (protocol/traced.py): the client's template gives the bytes a full encoding gives, and
the server's shortcut gives what a full parse gives, for any traceparent, valid or hostile."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rpcframework.codec import Encoding
from rpcframework.protocol.events import CallResult, ProposalAccepted, ProposalReceived
from rpcframework.protocol.messages import Extensions, Feature, Proposal, TraceContext
from rpcframework.protocol.rpc import ClientConnection, ProposalEvents, ServerConnection
from rpcframework.protocol.traced import split_traced
from rpcframework.returnvalues import S_OK

pytestmark = pytest.mark.timeout(60)

PROPOSAL = Proposal(service="Bench/Echo", action_name="echo", client_version="rpcframework/0.1")
OFFER = Extensions(features=frozenset({Feature.REUSE, Feature.PIPELINE, Feature.TRACE}))
_HEX = "0123456789abcdef"
traceparents = st.builds(
    lambda v, t, s, f: f"{v}-{t}-{s}-{f}",
    st.text(_HEX, min_size=2, max_size=2).filter(lambda v: v != "ff"),
    st.text(_HEX, min_size=32, max_size=32).filter(lambda t: t != "0" * 32),
    st.text(_HEX, min_size=16, max_size=16).filter(lambda s: s != "0" * 16),
    st.text(_HEX, min_size=2, max_size=2),
)


def negotiated_pair(events: ProposalEvents | None = None) -> tuple[ClientConnection, ServerConnection]:
    """A client and a server machine after one plain call that negotiated pipeline and trace."""
    client = ClientConnection(offer=OFFER)
    server = ServerConnection(extensions=OFFER, proposals=events)
    server.receive_data(client.send_proposal(PROPOSAL))
    assert isinstance(server.next_event(), ProposalReceived)
    client.receive_data(server.accept())
    assert isinstance(client.next_event(), ProposalAccepted)
    server.receive_data(client.send_arguments(["x"]))
    server.next_event()
    client.receive_data(server.send_result(S_OK("x")))
    assert isinstance(client.next_event(), CallResult)
    return client, server


def full_encoding(proposal: Proposal, trace: TraceContext, args: list[str]) -> bytes:
    """What send_call sent before templates: the marked proposal with its trace, encoded in full."""
    reference = ClientConnection(offer=OFFER)
    reference._pipeline = True  # the state after negotiation, without running one
    reference._negotiated = OFFER
    return reference.send_call(dataclasses.replace(proposal, trace_context=trace), args)


@settings(max_examples=50, deadline=None)
@given(parents=st.lists(traceparents, min_size=1, max_size=4), state=st.none() | st.just("a=1"))
def test_the_template_gives_the_bytes_a_full_encoding_gives(parents: list[str], state: str | None) -> None:
    client, _ = negotiated_pair()
    for parent in parents:
        trace = TraceContext(parent, state)
        assert client.send_call(PROPOSAL, ["x"], None, trace) == full_encoding(PROPOSAL, trace, ["x"])
        client._state = client._state.IDLE  # as after the answer, which this test does not run


@settings(max_examples=50, deadline=None)
@given(parents=st.lists(traceparents, min_size=2, max_size=5))
def test_a_traced_client_and_server_keep_one_proposal_object(parents: list[str]) -> None:
    events = ProposalEvents()
    client, server = negotiated_pair(events)
    proposals = []
    for parent in parents:
        server.receive_data(client.send_call(PROPOSAL, ["x"], None, TraceContext(parent)))
        event = server.next_event()
        assert isinstance(event, ProposalReceived) and event.trace == TraceContext(parent)
        assert event.proposal.trace_context is None
        proposals.append(event.proposal)
        owed = server.accept()  # pipelined: the ack goes out with the result
        server.next_event()  # the arguments
        client.receive_data(owed + server.send_result(S_OK("x")))
        assert isinstance(client.next_event(), CallResult)
    assert all(p is proposals[0] for p in proposals)


def _server_view(payload: bytes, events: ProposalEvents) -> tuple[Proposal | None, TraceContext | None] | str:
    server = ServerConnection(extensions=OFFER, proposals=events)
    server._pipeline = True  # a connection that negotiated pipelining
    server.receive_data(b"%d:%b" % (len(payload), payload))
    try:
        event = server.next_event()
    except Exception as exc:  # the full parse refuses it: so must the shortcut
        return type(exc).__name__
    assert isinstance(event, ProposalReceived)
    return event.proposal, event.trace


_TEMPLATE = (
    b'{"OK": true, "Value": [["Bench/Echo", "None", "unknown"], ["RPC", "echo"], "", "rpcframework/0.1", '
    b'{"pipeline": true, "trace": {"traceparent": "%b"}}]}'
)
_VALID = b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01"


@settings(max_examples=300, deadline=None)
@given(
    middle=st.one_of(
        st.binary(min_size=55, max_size=55),
        st.text('0123456789abcdef-"\\ ,:{}[]ABCDEFf', min_size=55, max_size=55).map(str.encode),
        traceparents.map(str.encode),
    )
)
def test_the_server_shortcut_gives_what_a_full_parse_gives(middle: bytes) -> None:
    warm = ProposalEvents()
    assert not isinstance(_server_view(_TEMPLATE % _VALID, warm), str)  # the cache now holds the prefix
    assert split_traced(_TEMPLATE % middle) is not None
    fast = _server_view(_TEMPLATE % middle, warm)
    full = _server_view(_TEMPLATE % middle, ProposalEvents())
    if isinstance(full, str) or isinstance(fast, str):
        assert fast == full
        return
    assert fast[1] == full[1] and fast[0] == full[0]


def test_hostile_bytes_in_the_traceparent_place_are_parsed_in_full() -> None:
    """A quote in the 55 characters could change the structure: the cached proposal must not be used for it."""
    warm = ProposalEvents()
    first = _server_view(_TEMPLATE % _VALID, warm)
    assert not isinstance(first, str)
    sneaky = b'x", "z": {"q": "' + b"y" * 39  # 55 bytes: closes the string and opens more structure
    assert len(sneaky) == 55
    view = _server_view(_TEMPLATE % sneaky, warm)
    assert view == _server_view(_TEMPLATE % sneaky, ProposalEvents())


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b'"}}]}',
        b'"trace": {"traceparent": "' + b"0" * 55 + b'"}}]',  # no closing brace
        b'{"trace": {"traceparent": "' + b"0" * 54 + b'"}}]}',  # one character short
    ],
)
def test_split_traced_takes_only_the_exact_form(payload: bytes) -> None:
    assert split_traced(payload) is None


def test_another_encoding_takes_the_ordinary_path() -> None:
    client = ClientConnection(offer=OFFER, encoding=Encoding.DENCODE)
    server = ServerConnection(extensions=OFFER)
    trace = TraceContext(_VALID.decode())
    server.receive_data(client.send_proposal(dataclasses.replace(PROPOSAL, trace_context=trace)))
    event = server.next_event()
    assert isinstance(event, ProposalReceived) and event.trace == trace and event.proposal.trace_context is None


# --- attack run 5 on the shortcut -------------------------------------------------------------------------------------


def test_the_bytes_before_a_cached_traceparent_are_not_a_proposal() -> None:
    """Attack run 5: the traced table's keys lived in the table of whole payloads, so another user sending just the
    bytes before the traceparent had them accepted as the cached proposal (and learnt what others had called)."""
    shared = ProposalEvents()
    assert not isinstance(_server_view(_TEMPLATE % _VALID, shared), str)  # someone's traced call is in the table
    cut = (_TEMPLATE % _VALID)[: -len(_VALID) - 5]
    assert cut.endswith(b'{"traceparent": "')
    assert _server_view(cut, shared) == _server_view(cut, ProposalEvents()) == "ProtocolError"


_DECOY_HEAD = '{"OK": true, "Value": [["Bench/Echo", "None", "unknown"], ["RPC", "echo"], "", ""'
DECOYS = {
    "sixth element": _DECOY_HEAD
    + ', {"pipeline": true, "trace": {"traceparent": "%s"}}, {"trace": {"traceparent": "%s"}}]}',
    "extra top-level key": '{"OK": true, "Value": [["Bench/Echo", "None", "unknown"], ["RPC", "echo"], "", "", '
    '{"pipeline": true, "trace": {"traceparent": "%s"}}], "zz": [{"trace": {"traceparent": "%s"}}]}',
    "escaped-quote key": _DECOY_HEAD
    + ', {"pipeline": true, "trace": {"traceparent": "%s"}, "x\\"trace": {"traceparent": "%s"}}]}',
}


@pytest.mark.parametrize("form", list(DECOYS))
def test_a_decoy_trace_at_the_end_is_not_taken_for_the_real_one(form: str) -> None:
    """Attack run 5: the 55 characters at the end were the traceparent of a decoy ``trace`` object holding the same
    value as the real one when the table was filled; later payloads changed only the decoy, and the shortcut
    reported the decoy's trace where a full parse reports the real one."""
    first, later = "00-" + "a" * 32 + "-" + "b" * 16 + "-01", "00-" + "c" * 32 + "-" + "d" * 16 + "-01"
    shared = ProposalEvents()
    _server_view((DECOYS[form] % (first, first)).encode(), shared)
    payload = (DECOYS[form] % (first, later)).encode()
    assert _server_view(payload, shared) == _server_view(payload, ProposalEvents())
    assert not shared.traced  # not a form whose trace is the cut-out characters


def test_an_unchecked_traceparent_is_encoded_never_pasted_into_the_template() -> None:
    """Attack run 5: a traceparent given to send_call unchecked (TraceContext validates nothing) was pasted into
    the template: quotes and frames in it smuggled a second proposal into the connection."""
    client, server = negotiated_pair()
    smuggled = _VALID.decode() + '"}}]}' + '99:{"OK": true, "Value": ["x"]}'
    data = client.send_call(PROPOSAL, ["x"], None, TraceContext(smuggled))
    assert data == full_encoding(PROPOSAL, TraceContext(smuggled), ["x"])
    server.receive_data(data)
    event = server.next_event()
    assert isinstance(event, ProposalReceived) and event.trace is None  # one proposal, its odd trace dropped
