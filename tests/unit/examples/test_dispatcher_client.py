"""``DispatcherClient`` and the worker against ``MockTransport(DispatcherHandler)``: no socket, no certificate.

The handler runs in-process exactly as the server runs it (``types_`` checks, ``auth_`` rules, identity from the
caller), on a SQLite file of the test's own.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from examples.dispatcher.client import DispatcherClient
from examples.dispatcher.handler import DATABASE_ENV, DispatcherHandler
from examples.dispatcher.worker import WorkerError, drain, simulate
from rpcframework import S_ERROR
from rpcframework.client import MockTransport
from rpcframework.codec import Encoding
from rpcframework.security.authz import Caller


def caller(name: str, *properties: str) -> Caller:
    return Caller(dn=f"/DC=org/DC=test/CN={name}", username=name, group="users", properties=properties, vo="test")


@pytest.fixture
def handler(tmp_path: Path) -> Iterator[type[DispatcherHandler]]:
    bound = DispatcherHandler.with_database(tmp_path / "dispatcher.sqlite")
    yield bound
    bound.close_store()


def client_for(handler: type[DispatcherHandler], who: Caller | None = None, **options: Any) -> DispatcherClient:
    transport = MockTransport(handler, caller=who or caller("alice", "NormalUser"), **options)
    return DispatcherClient(transport=transport)


def test_every_wrapper(handler: type[DispatcherHandler]) -> None:
    client = client_for(handler, encoding=Encoding.JSON)  # what DIRAC's wire does to values (tuples -> lists)
    pid = client.create_project("p", ("a.root", "b.root"), {"max_attempts": 2})["Value"]
    assert pid == 1
    first = client.next_file(pid, "w1")["Value"]
    assert (first["file_id"], first["name"], first["attempt"], first["worker_id"]) == (1, "a.root", 1, "w1")
    assert client.file_done(pid, 1, "w1")["Value"] == {"file_id": 1, "state": "done", "repeated": False}
    second = client.next_file(pid, "w1")["Value"]
    assert client.file_failed(pid, second["file_id"], "w1")["Value"]["state"] == "ready"
    again = client.next_file(pid, "w1")["Value"]
    assert client.file_failed(pid, again["file_id"], "w1", False)["Value"]["state"] == "failed"
    assert client.next_file(pid, "w1")["Value"] is None
    status = client.project_status(pid)["Value"]
    assert status["counts"] == {"ready": 0, "reserved": 0, "done": 1, "failed": 1} and status["finished"] is True
    assert status["owner"] == "alice" and status["done_by_worker"] == {"w1": 1}
    assert [p["name"] for p in client.list_projects()["Value"]] == ["p"]
    assert client.list_projects("alice")["Value"][0]["total"] == 2


def test_wrappers_send_positional_arguments(handler: type[DispatcherHandler]) -> None:
    # Positional only, so the same client works against a DIRAC server (which takes no keyword arguments).
    transport = MockTransport(handler, caller=caller("alice"))
    client = DispatcherClient(transport=transport, timeout=30)
    client.create_project("p", ["a"])
    client.file_failed(1, 1, "w", False)
    client.list_projects("alice")
    calls = [(c.method, c.args, c.kwargs) for c in transport.calls]
    assert calls == [
        ("create_project", ("p", ["a"], {}), {}),
        ("file_failed", (1, 1, "w", False), {}),
        ("list_projects", ("alice",), {}),
    ]
    assert transport.calls[0].service == "DataManagement/Dispatcher" and transport.calls[0].timeout == 30


def test_ownership_through_the_handler(handler: type[DispatcherHandler]) -> None:
    alice = client_for(handler, caller("alice"))
    bob = client_for(handler, caller("bob"))
    admin = client_for(handler, caller("ops", "DispatcherAdmin"))
    pid = alice.create_project("p", ["a", "b"], {})["Value"]
    refused = bob.next_file(pid, "w")
    assert refused["OK"] is False and refused["Errno"] == errno.EACCES
    assert "project 1 belongs to alice" in refused["Message"]
    for read in (lambda: bob.project_status(pid), lambda: bob.list_projects("alice")):
        refused = read()
        assert refused["OK"] is False and refused["Errno"] == errno.EACCES, refused
    assert "is not yours" in bob.project_status(pid)["Message"]
    assert bob.list_projects()["Value"] == []  # only bob's own
    assert admin.project_status(pid)["Value"]["owner"] == "alice"
    assert [p["owner"] for p in admin.list_projects("alice")["Value"]] == ["alice"]
    taken = admin.next_file(pid, "admin-w")["Value"]
    assert admin.file_done(pid, taken["file_id"], "admin-w")["OK"]


def test_refusals_are_clear_errors(handler: type[DispatcherHandler]) -> None:
    client = client_for(handler)
    unknown = client.next_file(42, "w")
    assert unknown["Errno"] == errno.ENOENT and "unknown project 42" in unknown["Message"]
    wrong_type = client.executeRPC("next_file", "42", "w")
    assert wrong_type["OK"] is False and wrong_type["Message"].startswith("Type mismatch in parameter 0")
    bad = client.create_project("p", [], {})
    assert bad["Errno"] == errno.EINVAL and "files must be a non-empty list" in bad["Message"]
    pid = client.create_project("p", ["a"], {})["Value"]
    not_held = client.file_done(pid, 1, "w")
    assert not_held["Errno"] == errno.EPERM and "does not hold file 1" in not_held["Message"]
    assert client.next_file(pid, "w")["OK"]  # and it keeps serving


def test_anonymous_callers_are_refused(handler: type[DispatcherHandler]) -> None:
    refused = DispatcherClient(transport=MockTransport(handler, caller=None)).list_projects()
    assert refused["OK"] is False and refused["Errno"] == 1111


def test_a_handler_without_database_does_not_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATABASE_ENV, raising=False)
    # initializeHandler's S_ERROR stops the service; MockTransport reports it as the call's failure.
    result = DispatcherClient(transport=MockTransport(DispatcherHandler)).list_projects()
    assert result["OK"] is False and f"no database: set {DATABASE_ENV}" in result["Message"]


def test_worker_drains_a_project(handler: type[DispatcherHandler]) -> None:
    client = client_for(handler)
    names = ["a.root", "b-flaky.root", "c-corrupt.root", "d.root"]
    pid = client.create_project("p", names, {"max_attempts": 2})["Value"]
    report = drain(client, pid, "w", process=simulate(0))
    assert report.finished and sorted(report.done) == ["a.root", "b-flaky.root", "d.root"]
    assert sorted(report.failed) == ["b-flaky.root", "c-corrupt.root", "c-corrupt.root"]
    assert client.project_status(pid)["Value"]["counts"]["failed"] == 1


def test_worker_asks_again_after_a_lost_reply_and_stops_on_a_refusal(handler: type[DispatcherHandler]) -> None:
    inner = MockTransport(handler, caller=caller("alice"))
    target = inner.open_target("DataManagement/Dispatcher", None)  # type: ignore[arg-type]
    lost: list[str] = []

    def flaky(service: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        # The first next_file runs on the service, but its reply never arrives (an instance went away).
        result = target.call(method, args, kwargs, timeout=None)
        if method == "next_file" and not lost:
            lost.append(method)
            return S_ERROR(errno.ECONNRESET, "connection reset after the arguments were sent")
        return result

    client = DispatcherClient(transport=MockTransport(flaky))
    pid = client.create_project("p", ["a", "b"], {})["Value"]
    report = drain(client, pid, "w", process=simulate(0))
    assert report.finished and report.done == ["a", "b"] and report.retried_calls == 1  # "a" was not lost
    with pytest.raises(WorkerError, match="unknown project 99"):
        drain(client, 99, "w")
