"""Hostile bytes after the handshake: oversized and malformed frames and proposals, JSON and DEncode bombs, the
largest argument list the limits allow and one element more. The server answers or closes, never leaks how it is
built, and keeps serving."""

from __future__ import annotations

import pytest
from support.security_kit import PROPOSAL, SERVICE, exchange, still_serves, tls_stream
from support.wire import frame

pytestmark = pytest.mark.timeout(60)

LEAKS = (b"Traceback", b'File "', b"/work/", b"site-packages", b".py", b"rpcframework.", b"CertFile", b"hostkey")


def _send(kit, reactor, *frames: bytes) -> tuple[bytes, bool]:
    return exchange(tls_stream(reactor, kit.tls_for(kit.user.proxy_file)), *frames, timeout=5)


def _assert_clean(received: bytes) -> None:
    for leak in LEAKS:
        assert leak not in received, (leak, received[:300])


ARGS_OK = b'{"OK": true, "Value": [[1]]}'
HOSTILE = {
    "frame length over the proposal limit": b"999999999:",
    "frame length with letters": b"12ab:xxxxxxxxxxxx",
    "negative frame length": b"-5:hello",
    "endless length digits": b"9" * 4096,
    "proposal not a list": frame(b'{"OK": true, "Value": "hello"}'),
    "proposal too short": frame(b'{"OK": true, "Value": [["Sec/Probe"]]}'),
    "proposal with a huge service name": frame(PROPOSAL.replace(b"Sec/Probe", b"S" * 20000) % b"who"),
    "proposal naming a control character": frame(PROPOSAL.replace(b"Sec/Probe", b"Sec/Pro\\nbe") % b"who"),
    "json depth bomb": frame(b"[" * 50000 + b"]" * 50000),
    "json huge number": frame(b'{"OK": true, "Value": 1' + b"0" * 50000 + b"}"),
    "json class gadget": frame(b'{"__dCls": "os.system", "__dMod": "os", "args": ["id"]}'),
    "dencode depth bomb": frame(b"l" * 50000 + b"e" * 50000),
    "dencode huge integer": frame(b"i" + b"9" * 50000 + b"e"),
    "dencode length lie": frame(b"s999999999:abc"),
    "dencode unknown type": frame(b"\xff\xfe\xfd"),
    "not utf-8": frame(b'{"OK": true, "Value": "\xff\xfe"}'),
    "arguments depth bomb": frame(PROPOSAL % b"count") + frame(b"[" * 50000 + b"]" * 50000),
    "arguments in a different encoding": frame(PROPOSAL % b"count") + frame(b"l" * 20000),
    "arguments frame over the message limit": frame(PROPOSAL % b"count") + b"99999999999:",
    "handler raises": frame(PROPOSAL % b"boom") + frame(b'{"OK": true, "Value": []}'),
}


@pytest.mark.parametrize("payload", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_bytes_are_answered_or_closed_without_leaks(kit, serve, payload):
    reactor = serve()
    received, closed = _send(kit, reactor, payload)
    assert closed  # nothing waits for more: a refusal, an error result, or a plain close
    _assert_clean(received)
    still_serves(kit, reactor)


def test_oversized_message_refused_by_configuration(kit, serve):
    reactor = serve({"DIRAC": {"Security": {"Server": {"MaxMessageSize": 4096}}}})
    big = b'{"OK": true, "Value": [["' + b"x" * 8000 + b'"]]}'
    received, closed = _send(kit, reactor, frame(PROPOSAL % b"count"), frame(big))
    assert closed and b'"OK": true, "Value": 1' not in received
    _assert_clean(received)
    still_serves(kit, reactor)


def test_a_million_element_list_within_limits_and_one_element_over(kit, serve):
    reactor = serve()
    within = 1_000_000 - 10  # the envelope around the list counts too: {"OK", "Value"} and the argument list
    with kit.client(reactor.url(SERVICE), timeout=60) as client:
        assert client.count(list(range(within)))["Value"] == within
    over = b'{"OK": true, "Value": [[' + b",".join([b"0"] * 1_000_001) + b"]]}"
    received, closed = _send(kit, reactor, frame(PROPOSAL % b"count"), frame(over))
    assert closed and b'"Value": 1000001' not in received
    _assert_clean(received)
    still_serves(kit, reactor)
