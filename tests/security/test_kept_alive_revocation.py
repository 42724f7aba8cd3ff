"""A connection kept alive across a CRL update or a proxy's expiry is no longer served (issue 12.4), on both server
back ends: an idle one is closed by the server within ``CredentialsCheckInterval``; a busy one is refused at its
next call, with the reason, and closed. Other users' connections carry on.

The client side is our own client's exchange on one connection (``client.inner``), so that nothing reconnects
behind the test's back: a refusal or a close is the kept-alive connection's own fate.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.security_kit import SERVICE, ProbeHandler
from support.waiting import wait_for

from rpcframework.client.inner import Attempt, Connection, InnerRPCClient
from rpcframework.client.policy import Deadline
from rpcframework.client.rpcclient import RPCClient
from rpcframework.config import load_dict
from rpcframework.errors import RemoteError, RPCFrameworkError
from rpcframework.returnvalues import ENOAUTH, DReturn
from rpcframework.security.devca import DevCA, IssuedCredential
from rpcframework.server import Service, ServiceReactor
from rpcframework.transports import TLSConfig

pytestmark = pytest.mark.timeout(60)

BACKENDS = ["pyopenssl", pytest.param("m2crypto", marks=pytest.mark.m2crypto)]
INTERVAL = 0.2  # CredentialsCheckInterval of these servers
#: Calls the busy client makes at most: far more than fit in a few check intervals, fewer than in 30 s.
MAX_BUSY_CALLS = 60_000


class Setup:
    def __init__(self, root: Path, backend: str) -> None:
        self.ca = DevCA.init(root / "ca", key_type="ec")
        self.victim = self.ca.issue_user("victim")
        self.steady = self.ca.issue_user("steady")
        self.host = self.ca.default_host()
        self.backend = backend
        self.config = load_dict(
            {
                "DIRAC": {
                    "Security": {
                        "CALocation": str(self.ca.cert_dir),
                        "Server": {
                            "CredentialsCheckInterval": str(INTERVAL),
                            "AutoBan": {"Exempt": "127.0.0.1"},
                            "MaxCallsPerConnection": "10000000",  # only a revocation may end the busy connection
                        },
                    }
                },
                "Registry": {
                    "Users": {"victim": {"DN": self.victim.dn}, "steady": {"DN": self.steady.dn}},
                    "Groups": {"users": {"Users": "victim, steady", "Properties": "NormalUser"}},
                    "DefaultGroup": "users",
                },
            }
        )
        tls = TLSConfig(str(self.host.cert_file), str(self.host.key_file), ca_dir=str(self.ca.cert_dir))
        service = Service(SERVICE, ProbeHandler, config=self.config, port=0)
        self.reactor = ServiceReactor([service], host="127.0.0.1", backend=backend, tls=tls).start()

    def open(self, proxy: Path) -> OneConnection:
        return OneConnection(self, proxy)

    def fresh_connection_refused(self, proxy: Path) -> bool:
        """True once the server's TLS context refuses a new connection with ``proxy`` (the CRL is loaded)."""
        try:
            with self.open(proxy) as conn:
                return not conn.call("probe")["OK"]
        except RPCFrameworkError:
            return True


class OneConnection:
    """One connection to the probe service, through our client's exchange code, never replaced."""

    def __init__(self, setup: Setup, proxy: Path) -> None:
        self.rpc = RPCClient(
            setup.reactor.url(SERVICE), proxyLocation=str(proxy), config=setup.config, backend=setup.backend
        )
        endpoint = self.rpc.base.endpoints[setup.reactor.url(SERVICE)]
        stream = endpoint.backend.connect(endpoint.host, endpoint.port, tls=endpoint.tls)
        self.conn = Connection(endpoint.url, stream, self.rpc.base.offer)
        self.proposal = self.rpc.base.proposal(endpoint.path, "who")
        self.inner = InnerRPCClient(self.rpc.base, self.rpc.pool)

    def call(self, nonce: str) -> DReturn:
        deadline = Deadline.after(10.0)
        return self.inner.execute(self.conn, self.proposal, [nonce], {}, deadline=deadline, attempt=Attempt())

    def closed_by_server(self) -> bool:
        """Whether the server closed this idle connection (without waiting)."""
        try:
            return not self.conn.check_idle()
        except RPCFrameworkError:
            return True

    def __enter__(self) -> OneConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()
        self.rpc.close()


@pytest.fixture(params=BACKENDS)
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    made = Setup(tmp_path, request.param)
    yield made
    made.reactor.stop(timeout=5)


def test_an_idle_kept_alive_connection_of_a_revoked_user_is_closed(setup: Setup) -> None:
    with setup.open(setup.victim.proxy_file) as victim, setup.open(setup.steady.proxy_file) as steady:
        assert victim.call("before")["OK"] and steady.call("before")["OK"]
        setup.ca.revoke(setup.victim.cert_file)  # fetch-crl rewrites <hash>.r0
        assert wait_for(victim.closed_by_server, timeout=10), "the revoked user's idle connection stayed open"
        result = steady.call("after")  # another user's kept-alive connection is untouched
        assert result["OK"] and result["Value"]["username"] == "steady", result
    assert setup.fresh_connection_refused(setup.victim.proxy_file)


def test_a_busy_kept_alive_connection_of_a_revoked_user_is_refused_at_its_next_call(setup: Setup) -> None:
    # Calls in a tight loop keep the connection with a worker (it reads the next request itself), out of the
    # selector's idle sweep: the check at each proposal must stop it.
    outcome: dict[str, Any] = {}
    revoked = threading.Event()
    busy = threading.Event()

    def calls(victim: OneConnection) -> None:
        served_after = 0
        for number in range(MAX_BUSY_CALLS):
            if number == 10:
                busy.set()  # the tight loop is running
            try:
                result = victim.call(f"n{number}")
            except RemoteError as exc:  # the proposal was refused
                outcome["refused"] = exc.result
                break
            except RPCFrameworkError as exc:
                outcome["closed"] = exc
                break
            if not result["OK"]:
                outcome["failed"] = result
                break
            if revoked.is_set():
                served_after += 1
        outcome["served_after"] = served_after

    with setup.open(setup.victim.proxy_file) as victim:
        assert victim.call("first")["OK"]
        worker = threading.Thread(target=calls, args=(victim,), daemon=True)
        worker.start()
        assert busy.wait(30)
        setup.ca.revoke(setup.victim.cert_file)
        revoked.set()
        worker.join(30)
        assert not worker.is_alive(), "the revoked user was still served after 30 s"
    assert outcome["served_after"] < MAX_BUSY_CALLS - 1000, "the revoked user kept being served"
    refusal = outcome.get("refused")
    if refusal is not None:  # refused at a proposal: the reason is given
        assert refusal["Errno"] == ENOAUTH and "revoked" in refusal["Message"], refusal
    else:  # or closed while idle between two calls
        assert "closed" in outcome, outcome


def test_a_kept_alive_connection_is_closed_when_its_proxy_expires(setup: Setup, tmp_path: Path) -> None:
    short = _short_proxy(setup.ca, setup.victim, tmp_path / "short-proxy.pem", seconds=3)
    with setup.open(short) as victim:
        assert victim.call("while valid")["OK"]
        assert wait_for(victim.closed_by_server, timeout=15), "the connection outlived its proxy"


def _short_proxy(ca: DevCA, user: IssuedCredential, out: Path, *, seconds: int) -> Path:
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    ca.issue_proxy(
        user.cert_file,
        user.key_file,
        out,
        not_before=now - datetime.timedelta(minutes=1),
        not_after=now + datetime.timedelta(seconds=seconds),
    )
    return out
