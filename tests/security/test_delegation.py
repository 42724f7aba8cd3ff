"""Delegation: honoured only from a registered TrustedHost; the handler sees the delegated user with the real peer
visible; identities never cross between calls sharing one client (threads and asyncio tasks)."""

from __future__ import annotations

import asyncio
import itertools
import threading

import pytest
from support.security_kit import ALICE_DN, BOB_DN, PROPOSAL, exchange, tls_stream
from support.wire import frame

import rpcframework

pytestmark = pytest.mark.timeout(60)


def test_trusted_host_delegates_and_the_handler_sees_both(kit, serve):
    reactor = serve()
    with kit.client(reactor.url("Sec/Probe"), host=True) as portal:
        with rpcframework.delegate(BOB_DN, "admins"):
            seen = portal.who("n1")["Value"]
            assert portal.secret()["Value"] == "secret"  # bob's admins group grants ServiceAdministrator
        assert (seen["DN"], seen["username"], seen["group"]) == (BOB_DN, "bob", "admins")
        assert seen["properties"] == ["ServiceAdministrator"] and seen["delegatedFrom"] == kit.host.dn
        assert seen["peer"][0] == "127.0.0.1"
        assert portal.who("n2")["Value"]["username"] == "localhost"  # outside the block: the host itself


@pytest.mark.parametrize(("who", "group"), [("user", "users"), ("untrusted_host", "users"), ("user_as_host", "users")])
def test_delegation_refused_from_anyone_but_a_trusted_host(kit, serve, who, group):
    reactor = serve()
    if who == "user":
        client = kit.client(reactor.url("Sec/Probe"))
    else:
        cert = kit.untrusted_host if who == "untrusted_host" else kit.user
        config = kit.config({"DIRAC": {"Security": {"CertFile": str(cert.cert_file), "KeyFile": str(cert.key_file)}}})
        client = kit.client(reactor.url("Sec/Probe"), host=True, config=config)
    with client, rpcframework.delegate(ALICE_DN, group):
        refused = client.who("x")
    assert not refused["OK"] and refused["Errno"] == 1111
    assert "delegation refused" in refused["Message"] and "TrustedHost" in refused["Message"]


def test_a_user_certificate_whose_dn_is_also_a_trusted_host_cannot_delegate(kit, serve):
    reactor = serve()
    with kit.client(reactor.url("Sec/Probe"), proxy=kit.twin.proxy_file) as twin:
        assert twin.who("self")["Value"]["username"] == "twin"  # as itself it is the user
        with rpcframework.delegate(ALICE_DN, "users"):
            refused = twin.who("x")
    assert not refused["OK"] and refused["Errno"] == 1111
    assert "registered as a user" in refused["Message"]


def test_a_group_the_delegated_user_is_not_in_is_refused(kit, serve):
    """Refused outright, even by an ``all`` rule (not downgraded to anonymous); her own group works."""
    reactor = serve()
    with kit.client(reactor.url("Sec/Probe"), host=True) as portal:
        with rpcframework.delegate(ALICE_DN, "admins"):
            refused = portal.who("x")
            refused_open = portal.open()
        with rpcframework.delegate(ALICE_DN, "users"):
            seen = portal.who("ok")
    expected = f"delegation refused: {ALICE_DN} is not a member of group admins"
    for answer in (refused, refused_open):
        assert not answer["OK"] and answer["Errno"] == 1111 and expected in answer["Message"]
    assert seen["OK"], seen
    assert (seen["Value"]["username"], seen["Value"]["group"]) == ("alice", "users")
    assert seen["Value"]["delegatedFrom"] == kit.host.dn


def test_delegated_unknown_or_suspended_user_has_no_identity(kit, serve):
    reactor = serve()
    with kit.client(reactor.url("Sec/Probe"), host=True) as portal:
        for dn in ("/DC=org/DC=rpcframework/OU=Users/CN=nobody", kit.suspended.dn):
            with rpcframework.delegate(dn, "users"):
                refused = portal.who("x")
                assert portal.open()["Value"] == "anonymous"
            assert not refused["OK"] and refused["Errno"] == 1111


def test_delegation_from_a_raw_user_connection_is_refused(kit, serve):
    """The same attack without our client: [DN, group] written into the proposal by hand."""
    reactor = serve()
    proposal = PROPOSAL.replace(b'"", "9.1.22"', b'["%s", "users"], "9.1.22"' % ALICE_DN.encode()) % b"who"
    received, closed = exchange(tls_stream(reactor, kit.tls_for(kit.user.proxy_file)), frame(proposal))
    assert b"delegation refused" in received and b"1111" in received and closed


IDENTITIES = [(None, None), (ALICE_DN, "users"), (BOB_DN, "admins"), (BOB_DN, "users")]
TOTAL_CALLS = 10_000


def _expected(kit, identity):
    dn, group = identity
    return (kit.host.dn, "hosts") if dn is None else (dn, group)


def _call_as(client, identity, nonce):
    dn, group = identity
    if dn is None:
        return client.who(nonce)
    with rpcframework.delegate(dn, group):
        return client.who(nonce)


def test_identities_never_cross_between_threads_and_tasks_sharing_one_client(kit, serve):
    reactor = serve(max_threads=16)
    counter = itertools.count()
    problems: list[str] = []
    lock = threading.Lock()

    def next_call(worker: int):
        number = next(counter)
        if number >= TOTAL_CALLS:
            return None
        return IDENTITIES[(worker + number) % len(IDENTITIES)], f"{worker}-{number}"  # each worker alternates

    def check(identity, nonce, result) -> None:
        value = result.get("Value") or {}
        if (
            not result["OK"]
            or value.get("nonce") != nonce
            or (value.get("DN"), value.get("group")) != _expected(kit, identity)
        ):
            with lock:
                problems.append(f"{identity} {nonce} got {result}")

    with kit.client(reactor.url("Sec/Probe"), host=True) as client:

        def thread_worker(worker: int) -> None:
            for _ in range(TOTAL_CALLS):
                planned = next_call(worker)
                if planned is None:
                    return
                check(*planned, _call_as(client, *planned))

        async def task_worker(worker: int) -> None:
            for _ in range(TOTAL_CALLS):
                planned = next_call(worker)
                if planned is None:
                    return
                (dn, group), nonce = planned
                # The delegation is set in the task's own context; to_thread copies that context into its thread.
                if dn is None:
                    result = await asyncio.to_thread(client.who, nonce)
                else:
                    with rpcframework.delegate(dn, group):
                        result = await asyncio.to_thread(client.who, nonce)
                check(*planned, result)

        async def tasks() -> None:
            await asyncio.gather(*(task_worker(100 + i) for i in range(32)))

        threads = [threading.Thread(target=thread_worker, args=(i,), daemon=True) for i in range(32)]
        for thread in threads:
            thread.start()
        asyncio.run(tasks())
        for thread in threads:
            thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert next(counter) >= TOTAL_CALLS
    assert problems == []
