"""MockTransport: a function or a RequestHandler behind a Client, in-process, with calls recorded."""

from __future__ import annotations

from typing import Any

import pytest

from rpcframework.client import Client
from rpcframework.client.interfaces import Transport
from rpcframework.client.mock import MockCall, MockTransport, default_caller
from rpcframework.codec import Encoding
from rpcframework.errors import ConfigurationError
from rpcframework.returnvalues import S_ERROR, S_OK, DReturn
from rpcframework.security.authz import Caller
from rpcframework.server import RequestHandler


class DispatcherHandler(RequestHandler):
    initialized = 0

    @classmethod
    def initializeHandler(cls, serviceInfo: Any) -> DReturn:
        cls.initialized += 1
        return S_OK()

    types_next_file = [int, str]
    auth_next_file = ["authenticated"]

    def export_next_file(self, project_id: int, worker_id: str) -> DReturn:
        return S_OK({"project": project_id, "worker": worker_id, "caller": self.getRemoteCredentials()["username"]})

    types_admin_only = []
    auth_admin_only = ["ServiceAdministrator"]

    def export_admin_only(self) -> DReturn:
        return S_OK("secret")

    types_remaining = []
    auth_remaining = ["all"]

    def export_remaining(self) -> DReturn:
        return S_OK(self.time_remaining())


class DispatcherClient(Client):
    serverURL = "DataManagement/Dispatcher"

    def next_file(self, project_id: int, worker_id: str) -> DReturn:
        return self.executeRPC("next_file", project_id, worker_id)


def test_function_handler_and_recorded_calls() -> None:
    def answer(service: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> DReturn:
        return S_OK([service, method, list(args), kwargs])

    transport = MockTransport(answer)
    assert isinstance(transport, Transport)
    client = DispatcherClient(transport=transport, timeout=30)
    result = client.next_file(7, "w1")
    assert result["Value"] == ["DataManagement/Dispatcher", "next_file", [7, "w1"], {}]
    assert result["rpcStub"][1] == "next_file"
    client.report(1, detail=True)
    assert transport.calls == [
        MockCall("DataManagement/Dispatcher", "next_file", (7, "w1"), {}, 30.0),
        MockCall("DataManagement/Dispatcher", "report", (1,), {"detail": True}, 30.0),
    ]
    transport.reset()
    assert transport.calls == []


def test_request_handler_dispatch_with_default_caller() -> None:
    transport = MockTransport(DispatcherHandler)
    client = DispatcherClient(transport=transport)
    assert client.next_file(7, "w1")["Value"] == {"project": 7, "worker": "w1", "caller": "test-user"}
    assert client.next_file(8, "w2")["OK"]
    assert DispatcherHandler.initialized == 1  # once per service, not per call


def test_argument_checks_and_unknown_methods_as_the_server_does() -> None:
    client = DispatcherClient(transport=MockTransport(DispatcherHandler))
    wrong = client.next_file("seven", "w1")
    assert not wrong["OK"] and "Type mismatch" in wrong["Message"]
    assert client.nosuch()["Message"] == "Unknown method nosuch"


def test_authorization_against_the_fake_caller() -> None:
    client = DispatcherClient(transport=MockTransport(DispatcherHandler))
    refused = client.admin_only()
    assert not refused["OK"] and refused["Errno"] == 1111
    admin = Caller(dn="/DC=org/CN=admin", username="admin", group="admins", properties=("ServiceAdministrator",))
    assert DispatcherClient(transport=MockTransport(DispatcherHandler, caller=admin)).admin_only()["Value"] == "secret"
    unchecked = MockTransport(DispatcherHandler, authorize=False)
    assert DispatcherClient(transport=unchecked).admin_only()["OK"]


def test_anonymous_and_mapping_callers() -> None:
    anonymous = DispatcherClient(transport=MockTransport(DispatcherHandler, caller=None))
    # An anonymous dip:// peer, resolved as the real server does it; auth_ rules still apply to it.
    assert anonymous.whoami()["Value"]["username"] == "anonymous"
    refused = anonymous.next_file(1, "w")
    assert refused["OK"] is False and refused["Errno"] == 1111
    creds = {"username": "bob", "group": "g", "DN": "/CN=bob"}
    mapped = DispatcherClient(transport=MockTransport(DispatcherHandler, caller=creds))
    assert mapped.next_file(1, "w")["Value"]["caller"] == "bob"


def test_deadline_reaches_the_handler() -> None:
    client = DispatcherClient(transport=MockTransport(DispatcherHandler), timeout=30)
    remaining = client.remaining()["Value"]
    assert 0 < remaining <= 30


def test_encoding_round_trip_shows_what_the_wire_does() -> None:
    def answer(service: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> DReturn:
        return S_OK(args[0])

    plain = DispatcherClient(transport=MockTransport(answer))
    wire = DispatcherClient(transport=MockTransport(answer, encoding=Encoding.JSON))
    assert plain.echo((1, 2))["Value"] == (1, 2)
    assert wire.echo((1, 2))["Value"] == [1, 2]  # JSON has no tuples


def test_errors_and_bad_handlers() -> None:
    def fail(service: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> DReturn:
        return S_ERROR(5, "nope")

    assert DispatcherClient(transport=MockTransport(fail)).ping()["Errno"] == 5
    with pytest.raises(ConfigurationError):
        MockTransport(int)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        MockTransport("not callable")  # type: ignore[arg-type]
    assert default_caller().username == "test-user"


def test_failing_initialize_handler_is_reported() -> None:
    class Broken(RequestHandler):
        @classmethod
        def initializeHandler(cls, serviceInfo: Any) -> DReturn:
            return S_ERROR("database unreachable")

    result = DispatcherClient(transport=MockTransport(Broken)).ping()
    assert not result["OK"] and "database unreachable" in result["Message"]
