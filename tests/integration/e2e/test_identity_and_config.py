"""Who calls (delegation through a trusted host), where the client finds the service (configuration passed
explicitly or named by ``RPCFRAMEWORK_CONFIG``), and the same client against the handler with no server at all."""

from __future__ import annotations

from support.e2e_kit import ALICE_DN, SERVICE, CountingHandler, urls_of

import rpcframework
from examples.echo.client import EchoClient
from examples.echo.service import EchoHandler
from rpcframework.client import Client, MockTransport
from rpcframework.security.authz import Caller


class ComponentClient(Client):
    """A client named only by ``System/Component``: its URL comes from the configuration."""

    serverURL = "System/Component"


def test_delegation_through_a_trusted_host(creds, cluster):
    (reactor,) = cluster()
    # The host certificate (registered with TrustedHost) from /DIRAC/Security/CertFile, as a web portal has it.
    with creds.client(urls_of([reactor]), useCertificates=True, proxyLocation=None) as portal:
        own = portal.whoami()["Value"]
        assert own["username"] == "localhost" and "TrustedHost" in own["properties"]
        with rpcframework.delegate(ALICE_DN, "demo_users"):
            me = portal.whoami()["Value"]
            served = portal.served_by()["Value"]
        assert me["username"] == "alice" and me["group"] == "demo_users" and me["DN"] == ALICE_DN
        assert served["user"] == "alice"
        assert portal.whoami()["Value"]["username"] == "localhost"  # outside the block: the host again


def test_delegation_from_a_plain_user_is_refused(creds, cluster):
    (reactor,) = cluster()
    with creds.client(urls_of([reactor])) as client, rpcframework.delegate(ALICE_DN, "demo_users"):
        refused = client.served_by()
    assert not refused["OK"] and refused["Errno"] == 1111, refused
    assert "delegation refused" in refused["Message"] and "TrustedHost" in refused["Message"]
    assert CountingHandler.executions["served_by"] == 0
    with creds.client(urls_of([reactor])) as client:
        assert client.served_by()["Value"]["user"] == "dev-user"


def test_system_component_resolved_from_a_config_passed_explicitly(creds, cluster):
    (reactor,) = cluster(name="System/Component")
    config = creds.config(System={"URLs": {"Component": reactor.url("System/Component")}})
    with ComponentClient(config=config, proxyLocation=str(creds.user.proxy_file), timeout=10) as client:
        assert client.served_by()["Value"] == {"url": reactor.url("System/Component"), "user": "dev-user"}
        assert client.ping()["Value"]["name"] == "System/Component"


def test_system_component_resolved_through_rpcframework_config(creds, cluster, tmp_path, monkeypatch):
    (reactor,) = cluster()
    # Like a grid job: the configuration file named in the environment, the proxy and CAs in X509_* variables.
    config_file = tmp_path / "client.cfg"
    url = reactor.url(SERVICE)
    config_file.write_text(f"Systems\n{{\n  Demo\n  {{\n    URLs\n    {{\n      Echo = {url}\n    }}\n  }}\n}}\n")
    monkeypatch.setenv("RPCFRAMEWORK_CONFIG", str(config_file))
    monkeypatch.setenv("X509_USER_PROXY", str(creds.user.proxy_file))
    monkeypatch.setenv("X509_CERT_DIR", str(creds.ca.cert_dir))
    for name in ("DIRACSYSCONFIG", "RPCFRAMEWORK_CFG_JSON"):
        monkeypatch.delenv(name, raising=False)
    with EchoClient(timeout=10) as client:
        assert client.echo({"from": "env"})["Value"] == {"from": "env"}
        assert client.whoami()["Value"]["username"] == "dev-user"


def test_mock_transport_with_the_example_handler(creds):
    transport = MockTransport(EchoHandler)  # no server, no socket: the handler dispatched in-process
    client = EchoClient(transport=transport)
    assert client.add(2, 3)["Value"] == 5
    assert client.greet("Ada", greeting="Hi")["Value"] == "Hi, Ada! (answered for test-user)"
    assert client.executeRPC("add", "2", 3)["Message"].startswith("Type mismatch in parameter 0")
    refused = client.reset()  # no rule anywhere: denied, as on the server
    assert not refused["OK"] and refused["Errno"] == 1111
    assert [call.method for call in transport.calls] == ["add", "greet", "add", "reset"]
    guest = Caller(dn="/DC=org/DC=rpcframework/CN=guest", username="guest", group="guests", properties=())
    as_guest = EchoClient(transport=MockTransport(EchoHandler, caller=guest))
    assert as_guest.echo("x")["Value"] == "x"  # authenticated is enough for echo
    refused = as_guest.add(1, 2)  # add needs the NormalUser property
    assert not refused["OK"] and refused["Errno"] == 1111 and "NormalUser" in refused["Message"]
