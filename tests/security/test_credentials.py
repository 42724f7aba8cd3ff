"""Stolen, revoked, expired and unknown credentials; TLS parameters; CA, CRL and host certificate changes applied
while the server runs, without dropping calls."""

from __future__ import annotations

import shutil
import ssl
import threading

import pytest
from support.security_kit import PROPOSAL, SERVICE, ProbeHandler, address_of, exchange, tls_stream
from support.waiting import wait_for
from support.wire import frame

from rpcframework.client import Client
from rpcframework.config import load_dict
from rpcframework.errors import RPCFrameworkError
from rpcframework.security.devca import DevCA
from rpcframework.server import Service, ServiceReactor
from rpcframework.transports import TLSConfig

pytestmark = pytest.mark.timeout(60)


def _refused(reactor, tls) -> bool:
    """True when no call gets through with ``tls`` (TLS 1.3 reports a refused client certificate after the
    client's side of the handshake, so the refusal may show up as the connection closing unanswered)."""
    try:
        stream = tls_stream(reactor, tls)
    except RPCFrameworkError:
        return True
    try:
        # The whole call (proposal and arguments): the server answers and closes, so no read waits for a timeout.
        received, _ = exchange(stream, frame(PROPOSAL % b"open"), frame(b'{"OK": true, "Value": []}'), timeout=3)
    except RPCFrameworkError:
        return True
    finally:
        stream.close()
    return b'"OK": true' not in received


@pytest.mark.parametrize("which", ["revoked_cert", "revoked_proxy", "expired_proxy"])
def test_revoked_and_expired_credentials_are_refused_at_the_handshake(kit, serve, which):
    reactor = serve()
    tls = {
        "revoked_cert": kit.tls_for(kit.revoked.cert_file, kit.revoked.key_file),
        "revoked_proxy": kit.tls_for(kit.revoked.proxy_file),  # the proxy's issuer is on the CRL
        "expired_proxy": kit.tls_for(kit.expired_proxy),
    }[which]
    assert _refused(reactor, tls)
    assert not _refused(reactor, kit.tls_for(kit.user.proxy_file))


@pytest.mark.parametrize("who", ["stranger", "suspended"])
def test_unknown_and_suspended_users_have_no_identity(kit, serve, who):
    reactor = serve()
    cred = kit.stranger if who == "stranger" else kit.suspended
    with kit.client(reactor.url(SERVICE), proxy=cred.proxy_file) as client:
        assert client.open()["Value"] == "anonymous"
        refused = client.who("x")
    assert refused["Errno"] == 1111 and "anonymous" in refused["Message"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls_below_1_2_and_compression_are_not_offered(kit, serve):
    reactor = serve()
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    try:
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
        old.set_ciphers("ALL:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot even offer TLS 1.1")
    with pytest.raises((ssl.SSLError, OSError)), old.wrap_socket(ssl.create_connection(address_of(reactor))) as s:
        s.do_handshake()
    modern = ssl.create_default_context(cafile=None)
    modern.check_hostname = False
    modern.verify_mode = ssl.CERT_NONE
    modern.load_cert_chain(str(kit.user.proxy_file))
    with modern.wrap_socket(ssl.create_connection(address_of(reactor))) as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3") and tls.compression() is None


def test_ca_crl_and_host_certificate_changes_apply_without_restart_or_dropped_calls(tmp_path):
    ca = DevCA.init(tmp_path / "ca", key_type="ec")
    user, steady, host = ca.default_user(), ca.issue_user("steady"), ca.default_host()
    config = load_dict(
        {
            # The polling below makes refused handshakes on purpose: exempt loopback from temporary bans.
            "DIRAC": {"Security": {"Server": {"CredentialsCheckInterval": "0.2", "AutoBan": {"Exempt": "127.0.0.1"}}}},
            "Registry": {
                "Users": {"u": {"DN": user.dn}, "s": {"DN": steady.dn}},
                "Groups": {"users": {"Users": "u, s", "Properties": "NormalUser"}},
                "DefaultGroup": "users",
            },
        }
    )
    tls = TLSConfig(str(host.cert_file), str(host.key_file), ca_dir=str(ca.cert_dir))
    reactor = ServiceReactor([Service(SERVICE, ProbeHandler, config=config, port=0)], host="127.0.0.1", tls=tls).start()
    try:
        _check_reloads(reactor, ca, user, steady)
    finally:
        reactor.stop(timeout=5)


def _check_reloads(reactor, ca, user, steady) -> None:
    def client_tls(cred):
        return TLSConfig(str(cred.proxy_file), ca_dir=str(ca.cert_dir))

    stop = threading.Event()
    outcomes: list[bool] = []

    def steady_calls() -> None:  # a client calling all along, on fresh connections: none of its calls may fail
        for _ in range(2000):
            if stop.is_set():
                return
            outcomes.append(not _refused(reactor, client_tls(steady)))

    worker = threading.Thread(target=steady_calls, daemon=True)
    worker.start()
    try:
        first_serial = tls_stream(reactor, client_tls(user)).peer_identity.chain[0].serial_number
        assert not _refused(reactor, client_tls(user))
        ca.revoke(user.cert_file)  # fetch-crl rewrites <hash>.r0
        assert wait_for(lambda: _refused(reactor, client_tls(user)), timeout=5)
        renewed = ca.issue_host("localhost", directory=ca.directory / "renewed")
        for name in ("hostkey.pem", "hostcert.pem"):  # rotated in place, as an operator would
            shutil.copy(renewed.cert_file.parent / name, ca.directory / name)
        assert wait_for(
            lambda: tls_stream(reactor, client_tls(steady)).peer_identity.chain[0].serial_number != first_serial,
            timeout=5,
        )
        seen = len(outcomes)
        # The steady client goes on through the rotated credentials (a few more calls, unless it made all its calls).
        wait_for(lambda: len(outcomes) >= seen + 5 or not worker.is_alive(), timeout=30)
    finally:
        stop.set()
        worker.join(30)
    assert outcomes and all(outcomes)


def test_a_ca_added_to_the_directory_is_trusted_without_restart_and_its_crl_applies(tmp_path):
    """An operator drops a second CA's ``<hash>.0`` and ``<hash>.r0`` into the running server's CA directory: its
    users are accepted within ``CredentialsCheckInterval``; a later CRL from that CA revokes one of them live."""
    ca = DevCA.init(tmp_path / "ca", key_type="ec")
    second = DevCA.init(tmp_path / "ca2", key_type="ec", ca_name="Second Dev CA")
    assert second.subject_hash != ca.subject_hash
    carol, host = second.issue_user("carol"), ca.default_host()
    security = {
        "CALocation": str(ca.cert_dir),
        "CertFile": str(host.cert_file),
        "KeyFile": str(host.key_file),
        # The polling below makes refused handshakes on purpose: exempt loopback from temporary bans.
        "Server": {"CredentialsCheckInterval": "0.2", "AutoBan": {"Exempt": "127.0.0.1"}},
    }
    config = load_dict(
        {
            "DIRAC": {"Security": security},
            "Registry": {
                "Users": {"carol": {"DN": carol.dn}},
                "Groups": {"users": {"Users": "carol", "Properties": "NormalUser"}},
                "DefaultGroup": "users",
            },
        }
    )
    tls = TLSConfig(str(host.cert_file), str(host.key_file), ca_dir=str(ca.cert_dir))
    reactor = ServiceReactor([Service(SERVICE, ProbeHandler, config=config, port=0)], host="127.0.0.1", tls=tls).start()
    carol_tls = TLSConfig(str(carol.proxy_file), ca_dir=str(ca.cert_dir))  # the server's certificate is from `ca`
    try:
        assert _refused(reactor, carol_tls)  # an unknown CA
        for source in (second.ca_cert_file, second.crl_file):
            shutil.copy(source, ca.cert_dir / source.name)
        assert wait_for(lambda: not _refused(reactor, carol_tls), timeout=5)
        with Client(url=reactor.url(SERVICE), proxyLocation=str(carol.proxy_file), config=config, timeout=10) as client:
            seen = client.who("n")
        assert seen["OK"], seen
        assert (seen["Value"]["username"], seen["Value"]["group"]) == ("carol", "users")
        second.revoke(carol.cert_file)
        shutil.copy(second.crl_file, ca.cert_dir / second.crl_file.name)  # fetch-crl brings the new CRL
        assert wait_for(lambda: _refused(reactor, carol_tls), timeout=5)
    finally:
        reactor.stop(timeout=5)
