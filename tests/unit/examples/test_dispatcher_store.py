"""The dispatcher example's SQLite store: its rules, without any server.

Ownership, one holder per file (also under threads and across two connections to one file), retries, leases,
idempotent repeats, persistence across a reopen, and input validation.
"""

from __future__ import annotations

import errno
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.clock import FakeClock

from examples.dispatcher.store import (
    Actor,
    DispatcherStore,
    InvalidInput,
    NotAllowed,
    NotHeld,
    UnknownProject,
)

ALICE = Actor("alice")
BOB = Actor("bob")
ADMIN = Actor("root", is_admin=True)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_000_000.0)


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[DispatcherStore]:
    store = DispatcherStore(tmp_path / "dispatcher.sqlite", clock=clock)
    yield store
    store.close()


def files(count: int) -> list[str]:
    return [f"f{i:03d}" for i in range(count)]


def test_create_list_and_status(store: DispatcherStore) -> None:
    first = store.create_project(ALICE, "p1", files(3), {"max_attempts": 2, "campaign": "x"})
    second = store.create_project(BOB, "p2", ("a", "b"), {})
    assert (first, second) == (1, 2)
    status = store.project_status(ALICE, first)
    assert status["owner"] == "alice" and status["name"] == "p1" and status["total"] == 3
    assert status["counts"] == {"ready": 3, "reserved": 0, "done": 0, "failed": 0}
    assert status["attributes"] == {"max_attempts": 2, "campaign": "x"} and status["max_attempts"] == 2
    assert status["finished"] is False and status["held"] == [] and status["done_by_worker"] == {}
    assert [p["project_id"] for p in store.list_projects(ALICE)] == [1]  # the caller's own
    assert [p["name"] for p in store.list_projects(BOB)] == ["p2"]
    assert [p["name"] for p in store.list_projects(BOB, "bob")] == ["p2"]
    assert [p["name"] for p in store.list_projects(ADMIN, "alice")] == ["p1"]
    assert store.list_projects(ADMIN, "nobody") == [] and store.list_projects(ADMIN) == []


def test_only_the_owner_or_an_admin_reads_a_project(store: DispatcherStore) -> None:
    pid = store.create_project(ALICE, "p", files(2), {})
    with pytest.raises(NotAllowed, match=f"project {pid} is not yours: only its owner or an administrator") as info:
        store.project_status(BOB, pid)
    assert info.value.errno == errno.EACCES and "alice" not in str(info.value)
    assert store.project_status(ADMIN, pid)["owner"] == "alice"
    with pytest.raises(NotAllowed, match="only an administrator may list another user's projects"):
        store.list_projects(BOB, "alice")


def test_next_file_hands_out_each_file_once_then_none(store: DispatcherStore) -> None:
    pid = store.create_project(ALICE, "p", files(3), {})
    got = [store.next_file(ALICE, pid, f"w{i}") for i in range(3)]
    assert [g["name"] for g in got if g] == ["f000", "f001", "f002"]
    assert all(g is not None and g["attempt"] == 1 for g in got)
    assert store.next_file(ALICE, pid, "w9") is None  # everything is held
    held = store.project_status(ALICE, pid)["held"]
    assert [(h["name"], h["worker_id"], h["holder"]) for h in held] == [
        ("f000", "w0", "alice"),
        ("f001", "w1", "alice"),
        ("f002", "w2", "alice"),
    ]


def test_asking_again_returns_the_file_the_worker_holds(store: DispatcherStore, clock: FakeClock) -> None:
    pid = store.create_project(ALICE, "p", files(2), {"lease_seconds": 10})
    first = store.next_file(ALICE, pid, "w")
    clock.now += 5
    again = store.next_file(ALICE, pid, "w")
    assert first is not None and again is not None
    assert again["file_id"] == first["file_id"] and again["lease_expires"] == first["lease_expires"] + 5  # renewed


def test_file_done_and_its_repeat(store: DispatcherStore) -> None:
    pid = store.create_project(ALICE, "p", files(1), {})
    file = store.next_file(ALICE, pid, "w")
    assert file is not None
    assert store.file_done(ALICE, pid, file["file_id"], "w") == {"file_id": 1, "state": "done", "repeated": False}
    assert store.file_done(ALICE, pid, file["file_id"], "w")["repeated"] is True  # a lost reply, asked again
    status = store.project_status(ALICE, pid)
    assert status["finished"] is True and status["done_by_worker"] == {"w": 1}
    with pytest.raises(NotHeld):
        store.file_done(ALICE, pid, file["file_id"], "other")  # done, but not by "other"


def test_file_failed_repeated_says_where_the_file_is_now(store: DispatcherStore) -> None:
    pid = store.create_project(ALICE, "p", ["a"], {})
    file = store.next_file(ALICE, pid, "w1")
    assert file is not None
    first = store.file_failed(ALICE, pid, file["file_id"], "w1")
    assert (first["state"], first["repeated"]) == ("ready", False)
    assert store.next_file(ALICE, pid, "w2") is not None  # someone else took it in between
    again = store.file_failed(ALICE, pid, file["file_id"], "w1")
    assert (again["state"], again["attempts"], again["repeated"]) == ("reserved", 2, True)
    assert store.project_status(ALICE, pid)["held"][0]["worker_id"] == "w2"  # the repeat changed nothing


def test_reporting_a_file_you_do_not_hold(store: DispatcherStore) -> None:
    pid = store.create_project(ALICE, "p", files(2), {})
    file = store.next_file(ALICE, pid, "w1")
    assert file is not None
    with pytest.raises(NotHeld, match=r"worker 'w2' does not hold file 1 of project 1 \(the file is reserved\)"):
        store.file_done(ALICE, pid, file["file_id"], "w2")
    with pytest.raises(NotHeld, match=r"\(the file is ready\)"):
        store.file_failed(ALICE, pid, 2, "w1")  # never handed out
    with pytest.raises(NotHeld, match="project 1 has no file 99"):
        store.file_done(ALICE, pid, 99, "w1")
    assert NotHeld.errno == errno.EPERM


def test_only_the_owner_or_an_admin_changes_a_project(store: DispatcherStore) -> None:
    pid = store.create_project(ALICE, "p", files(2), {})
    for change in (
        lambda: store.next_file(BOB, pid, "w"),
        lambda: store.file_done(BOB, pid, 1, "w"),
        lambda: store.file_failed(BOB, pid, 1, "w"),
    ):
        with pytest.raises(NotAllowed, match="project 1 belongs to alice"):
            change()
    assert store.project_status(ALICE, pid)["counts"]["ready"] == 2  # nothing changed
    alices = store.next_file(ALICE, pid, "w")
    admins = store.next_file(ADMIN, pid, "w-admin")
    assert alices is not None and admins is not None
    # An administrator may also report for another user's worker (cleaning up after a lost job).
    assert store.file_done(ADMIN, pid, alices["file_id"], "w")["state"] == "done"
    # The same worker id run by another (non-admin) user is not the holder.
    with pytest.raises(NotAllowed):
        store.file_done(BOB, pid, admins["file_id"], "w-admin")


def test_failed_files_are_retried_up_to_max_attempts(store: DispatcherStore) -> None:
    pid = store.create_project(ALICE, "p", ["only"], {"max_attempts": 3})
    outcomes = []
    for _ in range(3):
        file = store.next_file(ALICE, pid, "w")
        assert file is not None
        outcomes.append((file["attempt"], store.file_failed(ALICE, pid, file["file_id"], "w")["state"]))
    assert outcomes == [(1, "ready"), (2, "ready"), (3, "failed")]
    assert store.next_file(ALICE, pid, "w") is None
    status = store.project_status(ALICE, pid)
    assert status["finished"] and status["failed_files"] == [{"file_id": 1, "name": "only", "attempts": 3}]


def test_failed_without_retry_fails_at_once_and_requeued_files_wait_behind_fresh_ones(store: DispatcherStore) -> None:
    pid = store.create_project(ALICE, "p", files(3), {})
    first = store.next_file(ALICE, pid, "w")
    assert first is not None
    assert store.file_failed(ALICE, pid, first["file_id"], "w", retry=False)["state"] == "failed"
    second = store.next_file(ALICE, pid, "w")
    assert second is not None and store.file_failed(ALICE, pid, second["file_id"], "w")["state"] == "ready"
    third = store.next_file(ALICE, pid, "w")
    assert third is not None and third["name"] == "f002"  # the fresh file before the requeued f001


def test_expired_lease_requeues_the_file_or_fails_it(store: DispatcherStore, clock: FakeClock) -> None:
    pid = store.create_project(ALICE, "p", ["a"], {"lease_seconds": 60, "max_attempts": 2})
    lost = store.next_file(ALICE, pid, "dead-worker")
    assert lost is not None
    clock.now += 61
    taken_over = store.next_file(ALICE, pid, "w2")
    assert taken_over is not None and taken_over["file_id"] == lost["file_id"] and taken_over["attempt"] == 2
    with pytest.raises(NotHeld):
        store.file_done(ALICE, pid, lost["file_id"], "dead-worker")  # too late: its lease ran out
    clock.now += 61  # w2 goes silent too: out of attempts
    assert store.next_file(ALICE, pid, "w3") is None
    assert store.project_status(ALICE, pid)["counts"]["failed"] == 1


@pytest.mark.parametrize(
    ("name", "file_list", "attributes", "message"),
    [
        ("", ["a"], {}, "project name must be a non-empty string"),
        ("p", [], {}, "files must be a non-empty list"),
        ("p", ["a", "a"], {}, "unique"),
        ("p", ["a", 3], {}, "file 1 must be a non-empty string"),
        ("p", ["a"], {"max_attempts": True}, "max_attempts"),
        ("p", ["a"], {"max_attempts": 0}, "max_attempts"),
        ("p", ["a"], {"lease_seconds": -1}, "lease_seconds"),
        ("p", ["a"], {"when": object()}, "JSON values"),
        ("p", ["a"], {"big": "x" * 20_000}, "bytes as JSON"),
        ("p", ["a"], "not a dict", "attributes must be a dict"),
        ("p", [f"f{i}" for i in range(10_001)], {}, "at most 10000 files"),
    ],
)
def test_bad_project_input(store: DispatcherStore, name: str, file_list: list, attributes: dict, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        store.create_project(ALICE, name, file_list, attributes)
    assert store.list_projects(ALICE) == []


def test_unknown_project_and_bad_ids(store: DispatcherStore) -> None:
    with pytest.raises(UnknownProject, match="unknown project 7"):
        store.project_status(ALICE, 7)
    with pytest.raises(UnknownProject):
        store.next_file(ALICE, 7, "w")
    with pytest.raises(InvalidInput, match="project_id must be an integer"):
        store.project_status(ALICE, True)
    with pytest.raises(InvalidInput, match="worker_id"):
        store.next_file(ALICE, 1, "")


def test_the_database_refuses_a_second_holder(store: DispatcherStore, tmp_path: Path) -> None:
    pid = store.create_project(ALICE, "p", ["a"], {})
    assert store.next_file(ALICE, pid, "w") is not None
    raw = sqlite3.connect(tmp_path / "dispatcher.sqlite")
    try:
        with pytest.raises(sqlite3.IntegrityError):
            raw.execute(
                "INSERT INTO assignments (file_id, project_id, worker_id, holder, claimed, lease_expires)"
                " VALUES (1, 1, 'intruder', 'alice', 0, 0)"
            )
    finally:
        raw.close()


def _claim_all(stores: list[DispatcherStore], pid: int, threads_per_store: int) -> list[int]:
    """Workers in threads claim and finish files until none is left; returns every file id handed out."""
    claimed: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(stores) * threads_per_store)

    def work(store: DispatcherStore, worker_id: str) -> None:
        barrier.wait(timeout=10)
        for _ in range(1000):
            file = store.next_file(ALICE, pid, worker_id)
            if file is None:
                return
            with lock:
                claimed.append(file["file_id"])
            store.file_done(ALICE, pid, file["file_id"], worker_id)

    threads = [
        threading.Thread(target=work, args=(store, f"s{s}-w{t}"))
        for s, store in enumerate(stores)
        for t in range(threads_per_store)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return claimed


def test_threads_never_get_the_same_file(store: DispatcherStore) -> None:
    pid = store.create_project(ALICE, "p", files(300), {})
    claimed = _claim_all([store], pid, threads_per_store=8)
    assert sorted(claimed) == list(range(1, 301))  # every file once, none twice
    assert store.project_status(ALICE, pid)["counts"]["done"] == 300


def test_two_connections_on_one_file_never_hand_out_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    stores = [DispatcherStore(path), DispatcherStore(path)]  # two service instances, as far as SQLite knows
    try:
        pid = stores[0].create_project(ALICE, "p", files(300), {})
        claimed = _claim_all(stores, pid, threads_per_store=4)
        assert sorted(claimed) == list(range(1, 301))
        assert sum(stores[1].project_status(ALICE, pid)["done_by_worker"].values()) == 300
    finally:
        for store in stores:
            store.close()


def test_state_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "persist.sqlite"
    first = DispatcherStore(path)
    pid = first.create_project(ALICE, "p", files(3), {"max_attempts": 5})
    held = first.next_file(ALICE, pid, "w")
    done = first.next_file(ALICE, pid, "w2")
    assert held is not None and done is not None
    first.file_done(ALICE, pid, done["file_id"], "w2")
    before = first.project_status(ALICE, pid)
    first.close()

    second = DispatcherStore(path)
    try:
        assert second.project_status(ALICE, pid) == before
        assert second.file_done(ALICE, pid, held["file_id"], "w")["state"] == "done"  # the holder carries on
        assert second.create_project(ALICE, "next", ["x"], {}) == pid + 1
    finally:
        second.close()


def test_the_database_file_is_private_whatever_the_umask(tmp_path: Path) -> None:
    """The store holds who owns which project: never readable by other local users (it was 0644)."""
    import os
    import stat

    old = os.umask(0)
    try:
        store = DispatcherStore(tmp_path / "private.sqlite")
        store.close()
    finally:
        os.umask(old)
    for path in tmp_path.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
