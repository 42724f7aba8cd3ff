"""Property-based: whatever a peer sends as a proposal, and whatever credentials it claims, the server side either
understands it or refuses it with one of our own errors; delegation is never honoured for anyone but a TrustedHost."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rpcframework.config import load_dict
from rpcframework.errors import CredentialsError, RPCFrameworkError
from rpcframework.protocol.events import NEED_DATA, ProposalReceived
from rpcframework.protocol.rpc import ServerConnection
from rpcframework.security.authz import AccessDenied, Caller, resolve_caller
from rpcframework.security.registry import Registry
from rpcframework.security.x509 import load_pem_chain

pytestmark = pytest.mark.timeout(60)

HOST_DN, PORTAL_DN, USER_DN = "/CN=worker", "/CN=portal", "/CN=alice"
REGISTRY = Registry.from_config(
    load_dict(
        {
            "Registry": {
                "Users": {"alice": {"DN": USER_DN}},
                "Groups": {"users": {"Users": "alice", "Properties": "NormalUser"}},
                "Hosts": {
                    "portal": {"DN": PORTAL_DN, "Properties": "TrustedHost"},
                    "worker": {"DN": HOST_DN, "Properties": "GenericPilot"},
                },
            }
        }
    )
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=20,
)
GOOD = [["Sec/Probe", "None", "unknown"], ["RPC", "who"], "", "9.1.22"]


def _mutations() -> st.SearchStrategy[object]:
    index = st.integers(min_value=0, max_value=len(GOOD) - 1)
    return st.one_of(json_values, st.tuples(index, json_values).map(lambda iv: _replace(iv[0], iv[1])))


def _replace(index: int, value: object) -> list[object]:
    proposal = list(GOOD)
    proposal[index] = value
    return proposal


def _drive(data: bytes) -> object:
    conn = ServerConnection()
    conn.receive_data(data)
    for _ in range(16):
        event = conn.next_event()
        if event is NEED_DATA or isinstance(event, ProposalReceived):
            return event
    return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutations())
def test_any_proposal_is_understood_or_refused_with_our_error(value):
    payload = json.dumps({"OK": True, "Value": value}).encode()
    # ProtocolError, CodecError...: the server answers with a refusal and closes.
    with contextlib.suppress(RPCFrameworkError):
        _drive(b"%d:%b" % (len(payload), payload))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_are_understood_or_refused_with_our_error(data):
    with contextlib.suppress(RPCFrameworkError):
        _drive(data)


@settings(max_examples=200, deadline=None)
@given(
    st.binary(max_size=400), st.sampled_from([b"", b"-----BEGIN CERTIFICATE-----\n", b"-----END CERTIFICATE-----\n"])
)
def test_any_credential_bytes_parse_or_raise_credentials_error(junk, marker):
    with contextlib.suppress(CredentialsError):
        load_pem_chain(marker + junk + marker.replace(b"BEGIN", b"END"))


peers = st.sampled_from([None, "", HOST_DN, PORTAL_DN, USER_DN, "/CN=unknown"])
extras = st.one_of(
    st.sampled_from(["", "hosts", "users", None]),
    st.lists(st.text(max_size=12) | st.sampled_from([USER_DN, "users", "hosts", PORTAL_DN]), max_size=3),
)


@settings(max_examples=400, deadline=None)
@given(peers, extras)
def test_delegation_is_honoured_only_for_a_trusted_host(peer, extra):
    try:
        caller = resolve_caller(peer, None, extra, REGISTRY)
    except AccessDenied:
        return
    assert isinstance(caller, Caller)
    if caller.delegated_from is not None:
        assert peer == PORTAL_DN  # nobody else gets to act for another identity
    if not caller.anonymous and caller.delegated_from is None:
        assert caller.dn == peer  # without delegation the identity is the peer's own
