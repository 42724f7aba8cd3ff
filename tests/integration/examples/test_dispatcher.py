"""The dispatcher example over real TLS on 127.0.0.1: every method, ownership, concurrency across two instances on
one SQLite file, a restart, retries, bad input; and its ``run_demo.py`` as ``./demo`` runs it.

Three users from the session's dev CA: ``dev-user`` (owns projects), ``bob`` (another user), ``ops`` (in a group
with the ``DispatcherAdmin`` property).
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.processes import run_example

from examples.dispatcher.client import DispatcherClient
from examples.dispatcher.handler import DispatcherHandler
from rpcframework.config import ConfigTree, load_dict
from rpcframework.security.devca import DevCA
from rpcframework.server import Service, ServiceReactor
from rpcframework.transports import TLSConfig

pytestmark = pytest.mark.timeout(120)

SERVICE = "DataManagement/Dispatcher"

Start = Callable[..., list[ServiceReactor]]
Connect = Callable[..., DispatcherClient]


@pytest.fixture(scope="module")
def proxies(rpcframework_dev_ca: DevCA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, Path]]:
    """User name -> (DN, proxy file)."""
    ca = rpcframework_dev_ca
    base = tmp_path_factory.mktemp("dispatcher-users")
    users = {"dev-user": ca.default_user()}
    users.update({name: ca.issue_user(name, directory=base / name) for name in ("bob", "ops")})
    return {name: (cred.dn, Path(str(cred.proxy_file))) for name, cred in users.items()}


@pytest.fixture(scope="module")
def config(proxies: dict[str, tuple[str, Path]]) -> ConfigTree:
    return load_dict(
        {
            "Registry": {
                "DefaultGroup": "dm_users",
                "Users": {name: {"DN": dn} for name, (dn, _) in proxies.items()},
                "Groups": {
                    "dm_users": {"Users": "dev-user, bob", "Properties": "NormalUser"},
                    "dm_admins": {"Users": "ops", "Properties": "NormalUser, DispatcherAdmin"},
                },
            }
        },
        "<dispatcher tests>",
    )


@pytest.fixture
def start(rpcframework_dev_ca: DevCA, config: ConfigTree, tmp_path: Path) -> Iterator[Start]:
    """``start(count=1, database=tmp_path/"dispatcher.sqlite")``: instances on one file, stopped at the end."""
    ca = rpcframework_dev_ca
    tls = TLSConfig(
        cert_file=str(ca.directory / "hostcert.pem"),
        key_file=str(ca.directory / "hostkey.pem"),
        ca_dir=str(ca.cert_dir),
    )
    started: list[tuple[ServiceReactor, type[DispatcherHandler]]] = []

    def start_instances(count: int = 1, database: Path | None = None) -> list[ServiceReactor]:
        reactors = []
        for _ in range(count):
            handler = DispatcherHandler.with_database(database or tmp_path / "dispatcher.sqlite")
            reactor = ServiceReactor(
                [Service(SERVICE, handler, config=config, port=0)], host="127.0.0.1", tls=tls
            ).start()
            started.append((reactor, handler))
            reactors.append(reactor)
        return reactors

    try:
        yield start_instances
    finally:
        for reactor, handler in started:
            reactor.stop(timeout=5)
            handler.close_store()


@pytest.fixture
def connect(
    rpcframework_dev_ca: DevCA,
    config: ConfigTree,
    proxies: dict[str, tuple[str, Path]],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Connect]:
    """``connect(reactors_or_urls, user="dev-user")``: a ``DispatcherClient`` with that user's proxy."""
    monkeypatch.setenv("X509_CERT_DIR", str(rpcframework_dev_ca.cert_dir))
    clients: list[DispatcherClient] = []

    def make(where: list[ServiceReactor] | list[str], user: str = "dev-user") -> DispatcherClient:
        urls = [w if isinstance(w, str) else w.url(SERVICE) for w in where]
        client = DispatcherClient(",".join(urls), proxyLocation=str(proxies[user][1]), config=config, timeout=10)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def value(result: dict[str, Any]) -> Any:
    assert result["OK"], result.get("Message")
    return result["Value"]


def test_every_method_over_tls(start: Start, connect: Connect) -> None:
    client = connect(start())
    pid = value(client.create_project("run-1", ["a.root", "b.root", "c.root"], {"max_attempts": 2, "tag": "x"}))
    first = value(client.next_file(pid, "w1"))
    assert (first["name"], first["attempt"]) == ("a.root", 1)
    assert value(client.next_file(pid, "w1")) == {**first, "lease_expires": pytest.approx(first["lease_expires"], 5)}
    assert value(client.file_done(pid, first["file_id"], "w1"))["state"] == "done"
    second = value(client.next_file(pid, "w2"))
    assert value(client.file_failed(pid, second["file_id"], "w2"))["state"] == "ready"
    third = value(client.next_file(pid, "w2"))
    assert value(client.file_failed(pid, third["file_id"], "w2", False))["state"] == "failed"
    status = value(client.project_status(pid))
    assert status["owner"] == "dev-user" and status["attributes"] == {"max_attempts": 2, "tag": "x"}
    assert status["counts"] == {"ready": 1, "reserved": 0, "done": 1, "failed": 1}
    assert [p["name"] for p in value(client.list_projects())] == ["run-1"]
    assert value(client.list_projects("dev-user"))[0]["project_id"] == pid
    others = client.list_projects("bob")  # another user's list is for administrators only
    assert others["OK"] is False and others["Errno"] == errno.EACCES
    assert "only an administrator may list another user's projects" in others["Message"]


def test_only_the_owner_or_an_admin_changes_a_project(start: Start, connect: Connect) -> None:
    reactors = start()
    owner, bob, ops = connect(reactors), connect(reactors, "bob"), connect(reactors, "ops")
    pid = value(owner.create_project("mine", ["a", "b", "c"], {}))
    held = value(owner.next_file(pid, "w"))
    for refused in (
        bob.next_file(pid, "w"),
        bob.file_done(pid, held["file_id"], "w"),
        bob.file_failed(pid, held["file_id"], "w"),
    ):
        assert refused["OK"] is False and refused["Errno"] == errno.EACCES
        assert "project 1 belongs to dev-user: only its owner or an administrator may change it" in refused["Message"]
    peek = bob.project_status(pid)  # reading is for the owner and administrators too
    assert peek["OK"] is False and peek["Errno"] == errno.EACCES and "project 1 is not yours" in peek["Message"]
    assert value(owner.project_status(pid))["counts"]["reserved"] == 1  # bob changed nothing
    bobs = value(bob.create_project("bobs", ["x"], {}))
    assert [p["owner"] for p in value(bob.list_projects())] == ["bob"]  # his own only
    assert [p["name"] for p in value(ops.list_projects("dev-user"))] == ["mine"]
    assert value(ops.project_status(bobs))["owner"] == "bob"
    # The administrator may work on and report for anyone's project and workers.
    assert value(ops.file_done(pid, held["file_id"], "w"))["state"] == "done"
    assert value(ops.next_file(bobs, "ops-w"))["name"] == "x"
    refused = owner.next_file(bobs, "w")
    assert refused["Errno"] == errno.EACCES and "belongs to bob" in refused["Message"]


def test_two_instances_on_one_database_never_hand_out_a_file_twice(start: Start, connect: Connect) -> None:
    reactors = start(2)
    pid = value(connect(reactors).create_project("shared", [f"f{i:02d}" for i in range(60)], {}))
    claimed: list[tuple[str, int]] = []
    errors: list[str] = []
    lock = threading.Lock()

    def work(worker_id: str, reactor: ServiceReactor) -> None:
        client = connect([reactor])  # half the workers on each instance: two connections compete for the file
        for _ in range(100):
            result = client.next_file(pid, worker_id)
            if not result["OK"] or result["Value"] is None:
                if not result["OK"]:
                    errors.append(result["Message"])
                return
            file_id = result["Value"]["file_id"]
            with lock:
                claimed.append((worker_id, file_id))
            done = client.file_done(pid, file_id, worker_id)
            if not done["OK"]:
                errors.append(done["Message"])

    threads = [threading.Thread(target=work, args=(f"w{i}", reactors[i % 2])) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(file_id for _, file_id in claimed) == list(range(1, 61))  # each file once, none twice
    status = value(connect([reactors[1]]).project_status(pid))
    assert status["counts"]["done"] == 60 and sum(status["done_by_worker"].values()) == 60


def test_state_survives_a_restart(start: Start, connect: Connect) -> None:
    (first,) = start()
    client = connect([first])
    pid = value(client.create_project("durable", ["a", "b", "c"], {"max_attempts": 4}))
    done = value(client.next_file(pid, "w1"))
    value(client.file_done(pid, done["file_id"], "w1"))
    held = value(client.next_file(pid, "w2"))
    before = value(client.project_status(pid))
    first.stop(timeout=5)  # the instance goes away; the file stays

    (second,) = start()
    again = connect([second])
    assert value(again.project_status(pid)) == before
    assert value(again.next_file(pid, "w2"))["file_id"] == held["file_id"]  # w2 still holds its file
    assert value(again.file_done(pid, held["file_id"], "w2"))["state"] == "done"
    assert value(again.create_project("next", ["x"], {})) == pid + 1


def test_failed_with_retry_requeues_up_to_the_limit(start: Start, connect: Connect) -> None:
    client = connect(start())
    pid = value(client.create_project("retry", ["only.root"], {"max_attempts": 3}))
    states = []
    for attempt in (1, 2, 3):
        file = value(client.next_file(pid, "w"))
        assert file["attempt"] == attempt
        states.append(value(client.file_failed(pid, file["file_id"], "w", True))["state"])
    assert states == ["ready", "ready", "failed"]
    assert value(client.next_file(pid, "w")) is None
    status = value(client.project_status(pid))
    assert status["finished"] and status["failed_files"] == [{"file_id": 1, "name": "only.root", "attempts": 3}]


def test_bad_input_gets_clear_errors_and_the_service_keeps_serving(start: Start, connect: Connect) -> None:
    client = connect(start())
    unknown = client.project_status(404)
    assert unknown["Errno"] == errno.ENOENT and "unknown project 404" in unknown["Message"]
    wrong_type = client.executeRPC("next_file", "1", "w")
    assert wrong_type["Message"] == (
        "Type mismatch in parameter 0 (starting with param 0) Received <class 'str'>, expected <class 'int'>"
    )
    too_few = client.executeRPC("file_done", 1, 1)
    assert too_few["Message"] == "Function file_done expects at least 3 arguments"
    bad_kw = client.executeRPC("file_failed", 1, 1, "w", retry="yes")
    assert bad_kw["OK"] is False and "Type mismatch in parameter 'retry'" in bad_kw["Message"]
    bad_attributes = client.create_project("p", ["a"], {"max_attempts": "3"})
    assert bad_attributes["Errno"] == errno.EINVAL and "max_attempts" in bad_attributes["Message"]
    pid = value(client.create_project("p", ["a", "b"], {}))
    not_held = client.file_done(pid, 2, "w")
    assert not_held["Errno"] == errno.EPERM
    assert "worker 'w' does not hold file 2 of project 1 (the file is ready)" in not_held["Message"]
    assert value(client.next_file(pid, "w"))["name"] == "a"  # still serving, state untouched by the refusals


def test_run_demo_drains_the_project_through_a_failover(tmp_path: Path) -> None:
    # The demo sets the X509_* variables itself; configuration from the environment must not leak in.
    completed = run_example("dispatcher/run_demo.py", "--dir", str(tmp_path), timeout=60)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    out = completed.stdout
    assert "bob: next_file(1, 'bob-1')  -> S_ERROR 'Permission denied ( 13 : project 1 belongs to dev-user" in out
    assert "stopping instance A" in out and "the workers go on through B" in out
    final = out.split("== final project_status(1)", 1)[1]
    assert "ready 0, held 0, done 29, failed 1; finished=True" in final
    assert "failed for good: run-42/evts-028-corrupt.root after 3 attempts" in final
    assert "nothing lost" in out and out.rstrip().endswith("done.")
    assert (tmp_path / "dispatcher.sqlite").exists() and (tmp_path / "dispatcher.toml").exists()
