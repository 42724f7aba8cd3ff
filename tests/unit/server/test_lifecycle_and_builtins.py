"""initializeHandler ordering, what a handler can read about its caller, and the ping/whoami/echo built-ins."""

from __future__ import annotations

import dataclasses
import datetime
import logging
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest

from rpcframework.server import (
    S_ERROR,
    S_OK,
    RequestContext,
    RequestHandler,
    dispatch,
    initialize_handler_class,
    make_service_info,
)

SERVICE_INFO = make_service_info("Test/Lifecycle")


def make_chain(calls: list[str]) -> tuple[type[RequestHandler], type[RequestHandler]]:
    class Base(RequestHandler):
        @classmethod
        def initializeHandler(cls, serviceInfo: Mapping[str, Any]) -> Any:
            calls.append(f"Base:{cls.__name__}:{serviceInfo['serviceName']}")
            return S_OK()

    class Middle(Base):
        pass  # defines none of its own: nothing runs for it

    class Leaf(Middle):
        @classmethod
        def initializeHandler(cls, serviceInfo: Mapping[str, Any]) -> Any:
            calls.append(f"Leaf:{cls.__name__}")
            cls.ready = True
            return None  # None counts as success

    return Base, Leaf


def test_each_ancestor_runs_once_base_first_bound_to_the_service_class() -> None:
    calls: list[str] = []
    _, leaf = make_chain(calls)
    assert initialize_handler_class(leaf, SERVICE_INFO) == {"OK": True, "Value": None}
    assert calls == ["Base:Leaf:Test/Lifecycle", "Leaf:Leaf"]
    assert vars(leaf)["ready"] is True


def test_failure_stops_the_chain_with_the_class_named() -> None:
    calls: list[str] = []

    class Failing(RequestHandler):
        @classmethod
        def initializeHandler(cls, serviceInfo: Mapping[str, Any]) -> Any:
            calls.append("Failing")
            return S_ERROR("no database")

    class After(Failing):
        @classmethod
        def initializeHandler(cls, serviceInfo: Mapping[str, Any]) -> Any:
            calls.append("After")
            return S_OK()

    result = initialize_handler_class(After, SERVICE_INFO)
    assert result["OK"] is False
    assert "Failing.initializeHandler failed: no database" in result["Message"]
    assert calls == ["Failing"]


def test_exception_and_bad_return(caplog: pytest.LogCaptureFixture) -> None:
    class Raises(RequestHandler):
        @classmethod
        def initializeHandler(cls, serviceInfo: Mapping[str, Any]) -> Any:
            raise OSError("port busy")

    class Weird(RequestHandler):
        @classmethod
        def initializeHandler(cls, serviceInfo: Mapping[str, Any]) -> Any:
            return True

    with caplog.at_level(logging.ERROR):
        raised = initialize_handler_class(Raises, SERVICE_INFO)
    assert raised["OK"] is False
    assert "Raises.initializeHandler failed: OSError: port busy" in raised["Message"]
    assert "port busy" in caplog.text
    weird = initialize_handler_class(Weird, SERVICE_INFO)
    assert weird["OK"] is False
    assert "must return S_OK/S_ERROR or None, not bool" in weird["Message"]


def test_service_info_is_read_only() -> None:
    with pytest.raises(TypeError):
        SERVICE_INFO["serviceName"] = "x"  # type: ignore[index]
    assert SERVICE_INFO["validNames"] == ["Test/Lifecycle"]
    assert isinstance(SERVICE_INFO["serviceStartTime"], datetime.datetime)


# -- what the handler can read ----------------------------------------------------------------------------------


class Reader(RequestHandler):
    types_read: ClassVar[list[Any]] = []

    def export_read(self) -> Any:
        return S_OK(
            {
                "credentials": self.getRemoteCredentials(),
                "address": self.getRemoteAddress(),
                "info": self.serviceInfoDict,
                "name": self.srv_getServiceName(),
                "url": self.srv_getURL(),
                "client": (self.srv_getClientVersion(), self.srv_getClientSetup(), self.srv_getClientVO()),
                "action": self.srv_getActionTuple(),
                "remaining": self.time_remaining(),
                "deadline": self.deadline,
                "connected": self.caller_connected(),
                "caller": self.caller,
                "same": self.request_context is self.request_context,
                "log": self.log.name,
            }
        )


@dataclasses.dataclass
class FakePeer:
    dn: str = "/DC=org/DC=x/CN=alice"
    subject: str = "/DC=org/DC=x/CN=alice/CN=123"
    issuer: str = "/DC=org/DC=x/CN=alice"
    is_proxy: bool = True
    is_limited_proxy: bool = False
    chain: tuple[Any, ...] = ("cert-object",)

    def seconds_left(self) -> float:
        return 3600.4


@dataclasses.dataclass
class FakeCaller:
    def to_cred_dict(self) -> dict[str, Any]:
        return {"DN": "/DC=org/DC=x/CN=alice", "username": "alice", "group": "users", "properties": ["NormalUser"]}


def test_handler_reads_its_context(context: RequestContext) -> None:
    value = dispatch(Reader, "read", [], None, context)["Value"]
    assert value["credentials"] == {}
    assert value["address"] == ("127.0.0.1", 40000)
    assert value["info"]["serviceName"] == "Bench/EchoPlain"
    assert value["info"]["clientVersion"] == "9.1.22"
    assert value["info"]["clientAddress"] == ("127.0.0.1", 40000)
    assert value["info"]["actionTuple"] == ("RPC", "echo")
    assert value["name"] == "Bench/EchoPlain"
    assert value["url"] == "dip://127.0.0.1:29136/Bench/EchoPlain"
    assert value["client"] == ("9.1.22", "None", "unknown")
    assert value["remaining"] is None and value["deadline"] is None
    assert value["connected"] is True
    assert value["caller"] is None and value["same"] is True
    assert value["log"] == __name__


def test_deadline_and_connection_come_from_the_reactor() -> None:
    connected = [True]
    context = RequestContext(deadline=time.monotonic() + 30, is_connected=lambda: connected[0])
    value = dispatch(Reader, "read", [], None, context)["Value"]
    assert 29 < value["remaining"] <= 30
    assert value["connected"] is True
    connected[0] = False
    assert context.caller_connected() is False
    assert RequestContext(deadline=time.monotonic() - 5).time_remaining() == 0.0


def test_credentials_merge_peer_and_caller() -> None:
    context = RequestContext(peer_identity=FakePeer(), caller=FakeCaller(), extra_credentials="hosts")
    credentials = context.credentials()
    chain = credentials.pop("x509Chain")
    assert chain.certificates == ("cert-object",)  # DIRAC's chain object over the verified certificates
    assert credentials == {
        "DN": "/DC=org/DC=x/CN=alice",
        "subject": "/DC=org/DC=x/CN=alice/CN=123",
        "issuer": "/DC=org/DC=x/CN=alice",
        "isProxy": True,
        "isLimitedProxy": False,
        "secondsLeft": 3600,
        "username": "alice",
        "group": "users",
        "properties": ["NormalUser"],
        "extraCredentials": "hosts",
    }
    credentials["group"] = "changed"
    assert context.credentials()["group"] == "users"  # a fresh dict every time


def test_mapping_caller() -> None:
    context = RequestContext(caller={"DN": "/CN=x", "username": "x"})
    assert context.credentials() == {"DN": "/CN=x", "username": "x"}


# -- built-ins -----------------------------------------------------------------------------------------------------


def test_ping_shape(context: RequestContext) -> None:
    result = dispatch(RequestHandler, "ping", [], None, context)
    assert result["OK"] is True
    info = result["Value"]
    assert {"version", "time", "service start time", "service uptime", "name", "cpu times"} <= set(info)
    assert set(info) <= {
        "version",
        "time",
        "host uptime",
        "service start time",
        "service uptime",
        "load",
        "name",
        "cpu times",
    }
    assert info["name"] == "Bench/EchoPlain"
    assert isinstance(info["time"], datetime.datetime) and info["time"].tzinfo is None
    assert isinstance(info["service uptime"], int) and info["service uptime"] >= 0
    assert set(info["cpu times"]) == {
        "user time",
        "system time",
        "children user time",
        "children system time",
        "elapsed real time",
    }
    if "load" in info:
        assert len(info["load"].split()) == 3
    if "host uptime" in info:
        assert isinstance(info["host uptime"], int)


def test_ping_takes_no_arguments(context: RequestContext) -> None:
    assert dispatch(RequestHandler, "ping", [1], None, context)["Message"] == (
        "Function ping takes at most 0 arguments, 1 given"
    )


def test_whoami_drops_the_chain() -> None:
    context = RequestContext(peer_identity=FakePeer(), caller=FakeCaller())
    value = dispatch(RequestHandler, "whoami", [], None, context)["Value"]
    assert "x509Chain" not in value
    assert value["username"] == "alice" and value["isProxy"] is True


def test_whoami_anonymous(context: RequestContext) -> None:
    assert dispatch(RequestHandler, "whoami", [], None, context) == {"OK": True, "Value": {}}


def test_echo(context: RequestContext) -> None:
    assert dispatch(RequestHandler, "echo", ["hello"], None, context) == {"OK": True, "Value": "hello"}
