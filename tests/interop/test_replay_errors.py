"""What our server machine answers to the unusual exchanges of ``error-replies.txt``.

Where DIRAC's answer is sane we match it byte for byte; where it leaks (``CallStack``) or stays silent forever
we answer DIRAC's message without the stack, and close (the divergences are listed in docs/protocol.md).
"""

from __future__ import annotations

import pytest

from rpcframework.errors import FrameError, FrameTooLargeError, ProtocolError
from rpcframework.protocol.events import (
    PAUSED,
    ArgumentsReceived,
    ConnectionClosed,
    ConnectionState,
    ProposalReceived,
)
from rpcframework.protocol.framing import encode_frame
from rpcframework.protocol.messages import DelegatedIdentity
from rpcframework.protocol.rpc import ServerConnection
from rpcframework.returnvalues import S_OK


def _run_well_formed(case, result):
    """Feed every sent frame; accept the proposal, answer the arguments with ``result``; return all bytes out."""
    server = ServerConnection()
    out = b""
    for data in case.sent:
        server.receive_data(data)
        while True:
            event = server.next_event()
            out += server.data_to_send()
            if isinstance(event, ProposalReceived):
                out += server.accept()
            elif isinstance(event, ArgumentsReceived):
                out += server.send_result(result)
            else:
                break
    return server, out


def _refused(case) -> tuple[ServerConnection, bytes, ProtocolError]:
    server = ServerConnection()
    with pytest.raises(ProtocolError) as info:
        for data in case.sent:
            server.receive_data(data)
            server.next_event()
    assert server.state is ConnectionState.ERROR
    return server, server.data_to_send(), info.value


def test_well_formed_call_matches_dirac(error_cases):
    case = error_cases["well-formed echo('hi')"]
    server, out = _run_well_formed(case, S_OK("hi"))
    assert out == case.received
    assert server.state is ConnectionState.CLOSED and case.server_closed


def test_delegated_identity_proposal_parses_and_call_matches(error_cases):
    case = error_cases["delegation from a host without asking ([DN, group])"]
    server = ServerConnection()
    server.receive_data(case.sent[0])
    event = server.next_event()
    assert event.proposal.extra_credentials == DelegatedIdentity("/DC=x/CN=someone", "users")
    _, out = _run_well_formed(case, S_OK("hi"))
    assert out == case.received


def test_keepalive_before_proposal_is_answered_with_the_same_pong(error_cases):
    case = error_cases["keepalive ping before the proposal"]
    _, out = _run_well_formed(case, S_OK("hi"))
    assert out == case.received
    assert out.startswith(b'dka56:{"OK": true, "Value": {"id": "probe1", "kaping": false}}')


def test_arguments_as_a_dict_get_diracs_exact_reply(error_cases):
    case = error_cases["arguments as a dict"]
    server = ServerConnection()
    server.receive_data(case.sent[0])
    assert isinstance(server.next_event(), ProposalReceived)
    out = server.accept()
    server.receive_data(case.sent[1])
    with pytest.raises(ProtocolError):
        server.next_event()
    assert out + server.data_to_send() == case.received


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("unknown action type", "Foo is not a known action type"),
        ("proposal is S_ERROR", "Invalid action proposal"),
        ("malformed JSON payload", "Invalid action proposal"),
        # DIRAC indexes into the string and answers "j is not up in this server"; we say what is wrong.
        ("proposal value is a string", "Invalid action proposal"),
        # DIRAC never answers and keeps the connection open; we refuse and close.
        ("proposal is a bare list", "Invalid action proposal"),
    ],
)
def test_invalid_proposals_get_diracs_message_without_callstack(error_cases, name, message):
    case = error_cases[name]
    _, out, error = _refused(case)
    expected = b'{"OK": false, "Errno": 0, "Message": "%s"}' % message.encode()
    assert out == encode_frame(expected)
    # The exception keeps the detail for our logs (e.g. the JSON error); the peer only gets the message.
    assert str(error) == message or name == "malformed JSON payload"
    assert b"CallStack" not in out
    if b"Message" in case.received:  # DIRAC said the same, plus its stack
        assert message.encode() in case.received or name == "proposal value is a string"


def test_unknown_action_type_matches_dirac_minus_callstack(error_cases):
    case = error_cases["unknown action type"]
    _, out, _ = _refused(case)
    dirac = case.received.decode()
    assert dirac.split(":", 1)[1].startswith(out.decode().split(":", 1)[1][:-1])


def test_no_colon_is_a_frame_error_without_reply(error_cases):
    _, out, error = _refused(error_cases["no colon in the first bytes"])
    assert isinstance(error, FrameError) and out == b""


def test_huge_declared_length_fails_before_buffering(error_cases):
    case = error_cases["huge declared length"]
    server = ServerConnection()
    with pytest.raises(FrameTooLargeError):
        server.receive_data(case.sent[0])
    assert server._decoder.buffered == 0
    assert server.data_to_send() == b""


def test_second_call_on_a_dirac_mode_connection_is_not_read(error_cases):
    case = error_cases["second call on the same connection"]
    server, out = _run_well_formed(case, S_OK("one"))
    assert out == b'27:{"OK": true, "Value": null}28:{"OK": true, "Value": "one"}'
    assert server.state is ConnectionState.CLOSED
    assert server.next_event() == ConnectionClosed()


def test_unknown_method_and_unauthorized_are_not_protocol_errors(error_cases):
    # The service layer decides these; the protocol machine delivers the proposal and waits.
    for name in ("unknown method", "unauthorized method (auth_secret = SiteManager)", "unknown service name"):
        server = ServerConnection()
        server.receive_data(error_cases[name].sent[0])
        assert isinstance(server.next_event(), ProposalReceived)
        assert server.next_event() is PAUSED
