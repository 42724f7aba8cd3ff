"""Typed messages: proposal, extra credentials, extensions, keepalive, arguments, transfer chunks."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rpcframework.codec import Encoding, encode
from rpcframework.errors import ProtocolError
from rpcframework.protocol.messages import (
    EXTENSIONS_KEY,
    HOST_CREDENTIALS,
    NO_EXTRA_CREDENTIALS,
    ActionType,
    DelegatedIdentity,
    Extensions,
    Feature,
    FileInfo,
    KeepAlive,
    Proposal,
    TransferDirection,
    arguments_from_wire,
    arguments_to_wire,
    check_envelope,
    extra_credentials_from_wire,
    overload_error,
    sanitize_result,
    upgrade_required_error,
)
from rpcframework.protocol.transfer_data import (
    TransferAbort,
    TransferChunk,
    TransferEnd,
    parse_transfer_message,
)
from rpcframework.returnvalues import S_ERROR, S_OK

WIRE = [["Framework/Foo", "MySetup", "myvo"], ["RPC", "ping"], "", "9.0.0"]


def test_proposal_matches_the_worked_example_of_the_reference():
    proposal = Proposal.from_wire(WIRE)
    assert proposal == Proposal(
        service="Framework/Foo", setup="MySetup", vo="myvo", action_name="ping", client_version="9.0.0"
    )
    assert proposal.extra_credentials is NO_EXTRA_CREDENTIALS
    assert encode(S_OK(proposal.to_wire())) == (
        b'{"OK": true, "Value": [["Framework/Foo", "MySetup", "myvo"], ["RPC", "ping"], "", "9.0.0"]}'
    )


@pytest.mark.parametrize(
    ("wire", "credentials"),
    [
        ("", NO_EXTRA_CREDENTIALS),
        ("hosts", HOST_CREDENTIALS),
        (["/DC=x/CN=u", "users"], DelegatedIdentity("/DC=x/CN=u", "users")),
    ],
)
def test_extra_credentials(wire, credentials):
    assert extra_credentials_from_wire(wire) == credentials
    assert credentials.to_wire() == wire
    assert extra_credentials_from_wire(tuple(wire) if isinstance(wire, list) else wire) == credentials


@pytest.mark.parametrize("wire", [None, "users", 1, ["only-dn"], ["/DC=x", 3], ["", "g"], ["a", "b", "c"], {}])
def test_invalid_extra_credentials(wire):
    with pytest.raises(ProtocolError):
        extra_credentials_from_wire(wire)


def test_short_and_long_forms_are_tolerated_like_dirac():
    # Three elements (no version), service info without a VO, and trailing junk: accepted.
    p = Proposal.from_wire([["S/C", "setup"], ["RPC", "m"], "hosts"])
    assert p.vo is None and p.client_version is None
    assert p.to_wire() == [["S/C", "setup"], ["RPC", "m"], "hosts"]
    p = Proposal.from_wire([["S/C", "s", "vo", "extra"], ["RPC", "m"], "", 42, "not-a-dict", "more"])
    assert p.client_version is None and p.extensions is None and p.vo == "vo"
    # DEncode gives tuples.
    assert Proposal.from_wire((("S/C", "s", "v"), ("RPC", "m"), "", "1")).action_name == "m"


def test_proposal_with_extensions_round_trips_and_has_the_documented_wire_form():
    p = Proposal(service="S/C", action_name="m", client_version="rpcframework/0.1", extensions=Extensions())
    wire = p.to_wire()
    assert wire[4] == {
        "rpcframework": {
            "version": 1,
            "features": ["crc32", "kwargs", "pipeline", "resume", "reuse", "stream", "trace", "typed"],
        }
    }
    assert Proposal.from_wire(wire) == p
    no_version = Proposal(service="S/C", action_name="m", client_version=None, extensions=Extensions())
    assert no_version.to_wire()[3] == ""


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        ([["S/C", "s", "v"], ["Foo", "echo"], "", "1"], "Foo is not a known action type"),
        ([["S/C", "s", "v"], ["FileTransfer", "Sideways"], "", "1"], "Service can't transfer files Sideways"),
        ([["NoSlash", "s", "v"], ["RPC", "m"], "", "1"], "NoSlash is not up in this server"),
        ([["A/B/C", "s", "v"], ["RPC", "m"], "", "1"], "A/B/C is not up in this server"),
        ([["/C", "s", "v"], ["RPC", "m"], "", "1"], "/C is not up in this server"),
        ("junk", "Invalid action proposal"),
        ([1, 2, 3], "Invalid action proposal"),
        ([["S/C", "s", "v"], ["RPC"], ""], "Invalid action proposal"),
        ([["S/C", "s", "v"], ["RPC", ""], ""], "Invalid action proposal"),
        ([["S/C", "s", "v"], ["RPC", 5], ""], "Invalid action proposal"),
        ([["S/C", 1, "v"], ["RPC", "m"], ""], "Invalid action proposal"),
        ([["S/C"], ["RPC", "m"], ""], "Invalid action proposal"),
        ([["S/C", "s"], ["RPC", "m"]], "Invalid action proposal"),
        (None, "Invalid action proposal"),
    ],
)
def test_invalid_proposals_have_dirac_messages(wire, message):
    with pytest.raises(ProtocolError) as info:
        Proposal.from_wire(wire)
    assert str(info.value) == message


def test_echoed_peer_strings_are_bounded_and_printable():
    with pytest.raises(ProtocolError) as info:
        Proposal.from_wire([["S/C", "s", "v"], ["X" * 10_000, "m"], ""])
    assert len(str(info.value)) < 150
    with pytest.raises(ProtocolError) as info:
        Proposal.from_wire([["S/C", "s", "v"], ["\x1b[31mred\n", "m"], ""])
    assert "\x1b" not in str(info.value) and "\n" not in str(info.value)


def test_transfer_direction():
    p = Proposal.from_wire([["S/C", "s", "v"], ["FileTransfer", "BulkToClient"], "", "1"])
    assert p.action_type is ActionType.FileTransfer
    assert p.transfer_direction is TransferDirection.BulkToClient
    assert Proposal(service="S/C", action_name="m").transfer_direction is None


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8), lambda c: st.lists(c, max_size=6)))
def test_from_wire_never_raises_anything_but_protocol_error(value):
    with contextlib.suppress(ProtocolError):
        Proposal.from_wire(value)


def test_extensions_parsing_and_negotiation():
    assert Extensions.from_wire(None) is None
    assert Extensions.from_wire({"other": 1}) is None
    offer = Extensions.from_wire({EXTENSIONS_KEY: {"version": 3, "features": ["reuse", "future-thing", 7]}})
    assert offer == Extensions(3, frozenset({Feature.REUSE}))
    ours = Extensions(1, frozenset({Feature.REUSE, Feature.KWARGS}))
    assert ours.negotiate(offer) == Extensions(1, frozenset({Feature.REUSE}))
    assert Feature.REUSE in ours and Feature.TYPED not in ours
    for bad in (
        {EXTENSIONS_KEY: 1},
        {EXTENSIONS_KEY: {"version": 0}},
        {EXTENSIONS_KEY: {"version": True}},
        {EXTENSIONS_KEY: {"version": 1, "features": "reuse"}},
    ):
        with pytest.raises(ProtocolError):
            Extensions.from_wire(bad)


def test_upgrade_required_error():
    error = upgrade_required_error(2, 1)
    assert error["Errno"] == 1602
    assert error["Message"].startswith("Client upgrade required ( 1602 : ")
    assert "got no protocol version" in upgrade_required_error(2, None)["Message"]


def test_keepalive_messages():
    ping = KeepAlive("abc1")
    assert ping.to_wire() == {"OK": True, "Value": {"id": "abc1", "kaping": True}}
    assert encode(ping.pong().to_wire()) == b'{"OK": true, "Value": {"id": "abc1", "kaping": false}}'
    assert KeepAlive.from_wire({"OK": True, "Value": {"id": "x", "kaping": False}}) == KeepAlive("x", False)
    for bad in (
        {"OK": True, "Value": {"id": 1, "kaping": True}},
        {"OK": True, "Value": None},
        [],
        S_ERROR("x"),
        {"OK": True, "Value": {"id": "x" * 1000, "kaping": True}},
    ):
        with pytest.raises(ProtocolError):
            KeepAlive.from_wire(bad)


def test_arguments_messages():
    assert arguments_to_wire(("a", 1), None) == S_OK(["a", 1])
    assert arguments_to_wire([1], {"k": 2}) == S_OK({"args": [1], "kwargs": {"k": 2}})
    assert arguments_from_wire(S_OK([1, 2]), kwargs_allowed=False) == ([1, 2], {})
    assert arguments_from_wire(S_OK((1,)), kwargs_allowed=False) == ([1], {})
    wire = S_OK({"args": [1], "kwargs": {"k": 2}})
    assert arguments_from_wire(wire, kwargs_allowed=True) == ([1], {"k": 2})
    for bad, allowed in (
        (wire, False),
        (S_OK({"a": 1}), True),
        (S_OK({"args": [], "kwargs": {1: 2}}), True),
        (S_ERROR("x"), True),
        (S_OK("s"), True),
        ([1], True),
    ):
        with pytest.raises(ProtocolError, match=r"Error in parameter check: 0|envelope"):
            arguments_from_wire(bad, kwargs_allowed=allowed)


def test_check_envelope_and_sanitize():
    assert check_envelope(S_OK(None)) == S_OK(None)
    for bad in ({"OK": True}, {"OK": False}, {"OK": 1, "Value": 2}, [], "x"):
        with pytest.raises(ProtocolError):
            check_envelope(bad)
    leaky = {"OK": False, "Message": "m", "Errno": 5, "CallStack": ["/srv/x.py"], "ExecInfo": 1}
    assert sanitize_result(leaky) == {"OK": False, "Errno": 5, "Message": "m"}
    assert list(sanitize_result(leaky)) == ["OK", "Errno", "Message"]
    assert sanitize_result({"OK": False, "Message": "m"}) == {"OK": False, "Errno": 0, "Message": "m"}
    ok = {"OK": True, "Value": 1, "CallStack": []}
    assert sanitize_result(ok) == {"OK": True, "Value": 1}
    plain = S_OK(2)
    assert sanitize_result(plain) is plain  # no copy on the hot path


def test_file_info_forms():
    up = FileInfo("f", "tok", 3)
    assert up.to_wire(TransferDirection.FromClient) == ["f", "tok", 3]
    assert FileInfo("b.tar", "").to_wire(TransferDirection.BulkFromClient) == ["b.tar", "", -1]
    assert FileInfo("f").to_wire(TransferDirection.ToClient) == ["f", ""]
    assert FileInfo.from_wire(S_OK(["f", "tok", 3]), TransferDirection.FromClient) == up
    resumed = FileInfo("f", "", None, 100)
    assert resumed.to_wire(TransferDirection.ToClient) == ["f", "", {"offset": 100}]
    assert (
        FileInfo.from_wire(S_OK(["f", "", {"offset": 100}]), TransferDirection.ToClient, resume_allowed=True) == resumed
    )
    for bad, direction in (
        (S_OK(["f", "", {"offset": 1}]), TransferDirection.ToClient),
        (S_OK(["f"]), TransferDirection.ToClient),
        (S_OK(["f", "", "3"]), TransferDirection.FromClient),
        (S_OK(["f", "", -2]), TransferDirection.FromClient),
        (S_OK("f"), TransferDirection.ToClient),
    ):
        with pytest.raises(ProtocolError):
            FileInfo.from_wire(bad, direction)


def test_transfer_chunk_messages():
    assert parse_transfer_message(S_OK([True, b"ab"])) == TransferChunk(b"ab")
    assert parse_transfer_message(S_OK((True, "ab\udcff"))) == TransferChunk(b"ab\xff")  # DEncode peers
    assert parse_transfer_message(S_OK([False, "d41d8cd98f00b204e9800998ecf8427e"])) == TransferEnd(
        "d41d8cd98f00b204e9800998ecf8427e"
    )
    abort = {"OK": False, "Message": "stop", "Errno": 0, "AbortTransfer": True}
    assert parse_transfer_message(abort) == TransferAbort("stop")
    for bad in (S_OK([True, 1]), S_OK([False, "x" * 40]), S_OK([1, b""]), S_OK([True]), S_ERROR("x")):
        with pytest.raises(ProtocolError):
            parse_transfer_message(bad)
    assert (
        encode(S_OK([True, b"abc"]), Encoding.JSON)
        == b'{"OK": true, "Value": [true, {"__dCls": "b64", "obj": "YWJj"}]}'
    )


def test_only_the_frameworks_overload_refusal_keeps_retry_after():
    # A handler cannot mark its own result as "nothing ran": a passed-on overload reply loses the key.
    from rpcframework.returnvalues import EOVERLOAD, S_ERROR

    from_handler = {**S_ERROR(EOVERLOAD, "busy downstream"), "RetryAfter": 1.0, "CallStack": ["x"]}
    assert "RetryAfter" not in sanitize_result(from_handler)
    marked = overload_error(S_ERROR(EOVERLOAD, "queue full"), 0.75)
    expected = {"OK": False, "Errno": EOVERLOAD, "Message": marked["Message"], "RetryAfter": 0.75}
    assert sanitize_result(marked) == expected
    assert list(sanitize_result(sanitize_result(marked))) == ["OK", "Errno", "Message", "RetryAfter"]
    with pytest.raises(ValueError):
        overload_error(S_ERROR(5, "not an overload"), 1.0)
    with pytest.raises(ValueError):
        overload_error(S_ERROR(EOVERLOAD, "x"), float("nan"))
