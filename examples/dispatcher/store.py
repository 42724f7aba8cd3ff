"""The dispatcher's state in SQLite: projects, their files, and who holds which file.

Nothing here knows about RPC: the handler turns calls into these methods and :class:`DispatcherError` into
``S_ERROR``. Keeping the rules here (ownership, one holder per file, retries, leases) lets the unit tests check
them without a server, and lets two service instances share one database file safely:

* every change runs in ``BEGIN IMMEDIATE``, which takes SQLite's write lock first, so the read-check-write steps of
  a change never interleave with another connection's, in this process or another one;
* handing out a file is one ``UPDATE ... WHERE state = 'ready'``: a file can only go from ready to reserved once;
* a partial unique index allows one open assignment per file, so even a bug above cannot give a file to two
  workers at the same time;
* WAL mode lets status readers run while a writer works; a restart loses nothing that was committed.

A worker holds at most one file of a project at a time. Asking again for the next file returns the one it holds,
and reporting a file done (or failed) twice is answered as the first time, so a worker whose reply got lost (a
failover in the middle of a call) can simply ask again. A held file has a lease: if the worker goes silent past it,
the file goes back to the queue (or fails, once it used up its attempts).
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Limits on what a caller controls: the service stores what it is given, so every size is bounded.
MAX_FILES_PER_PROJECT = 10_000
MAX_NAME_LENGTH = 1024
MAX_ATTRIBUTES_BYTES = 16_384
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_LEASE_SECONDS = 600.0
#: A change waits this long for another connection's write lock before giving up.
BUSY_TIMEOUT_SECONDS = 10.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
    project_id    INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL,
    owner         TEXT NOT NULL,
    attributes    TEXT NOT NULL,              -- a JSON object, as the creator gave it
    max_attempts  INTEGER NOT NULL,
    lease_seconds REAL NOT NULL,
    created       REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    file_id    INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER NOT NULL REFERENCES projects (project_id),
    name       TEXT NOT NULL,
    state      TEXT NOT NULL DEFAULT 'ready' CHECK (state IN ('ready', 'reserved', 'done', 'failed')),
    attempts   INTEGER NOT NULL DEFAULT 0,   -- how many times it was handed out
    UNIQUE (project_id, name)
);
CREATE INDEX IF NOT EXISTS files_to_hand_out ON files (project_id, state, attempts, file_id);
CREATE TABLE IF NOT EXISTS assignments (
    assignment_id INTEGER PRIMARY KEY AUTOINCREMENT,
    file_id       INTEGER NOT NULL REFERENCES files (file_id),
    project_id    INTEGER NOT NULL REFERENCES projects (project_id),
    worker_id     TEXT NOT NULL,
    holder        TEXT NOT NULL,               -- the user the worker runs as
    claimed       REAL NOT NULL,
    lease_expires REAL NOT NULL,
    ended         REAL,                        -- NULL while the worker holds the file
    outcome       TEXT CHECK (outcome IN ('done', 'failed', 'expired'))
);
-- One worker at a time per file, enforced by the database itself.
CREATE UNIQUE INDEX IF NOT EXISTS one_holder_per_file ON assignments (file_id) WHERE ended IS NULL;
CREATE INDEX IF NOT EXISTS open_by_worker ON assignments (project_id, worker_id, holder) WHERE ended IS NULL;
"""


class DispatcherError(Exception):
    """A request the dispatcher refuses; ``errno`` and the message go to the caller in an ``S_ERROR``."""

    errno = errno.EINVAL


class InvalidInput(DispatcherError):
    errno = errno.EINVAL


class UnknownProject(DispatcherError):
    errno = errno.ENOENT


class NotAllowed(DispatcherError):
    errno = errno.EACCES


class NotHeld(DispatcherError):
    """The worker reported a file it does not hold (never had it, lost its lease, or someone else has it)."""

    errno = errno.EPERM


@dataclass(frozen=True)
class Actor:
    """Who asks: the caller's user name, and whether they hold the administrator property."""

    user: str
    is_admin: bool = False


@dataclass(frozen=True)
class _Project:
    project_id: int
    name: str
    owner: str
    max_attempts: int
    lease_seconds: float


def _create_private(path: str | Path) -> None:
    """Create the database file readable by its owner only (0600, whatever the umask); SQLite gives its WAL and
    shared-memory files the same mode. An existing file is left as it is; ``":memory:"`` has no file."""
    if str(path) == ":memory:" or str(path).startswith("file:"):
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600))
    except FileExistsError:
        return


class DispatcherStore:
    """Thread-safe access to one SQLite file (``":memory:"`` for a private, throw-away store).

    One connection per store, used under a lock: simple, and SQLite serialises writers anyway. Two stores (two
    service instances, or two processes) on the same file coordinate through SQLite's own locking.
    """

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        # Wall-clock time, not monotonic: leases are stored, shared between processes and survive restarts.
        self._clock = clock
        self._lock = threading.Lock()
        _create_private(path)
        # isolation_level=None: no implicit transactions; every change says BEGIN IMMEDIATE itself.
        self._db = sqlite3.connect(
            str(path), timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
        )
        try:
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute("PRAGMA journal_mode = WAL")  # remembered in the file: readers never wait for a writer
            # With WAL, NORMAL keeps every commit across a crash of the service; only a power cut can lose the last.
            self._db.execute("PRAGMA synchronous = NORMAL")
            # One transaction, so a second instance starting at the same time sees all of the schema or none.
            self._db.executescript(f"BEGIN IMMEDIATE;\n{SCHEMA}\nCOMMIT;")
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: the lock keeps this connection to one thread, BEGIN IMMEDIATE takes SQLite's."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            if self._db.in_transaction:
                self._db.execute("COMMIT")

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees the same snapshot."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield self._db
            finally:
                self._db.execute("COMMIT")

    # ------------------------------------------------------------------------------------------------ projects

    def create_project(self, actor: Actor, name: str, files: Sequence[Any], attributes: dict[str, Any]) -> int:
        """Store a new project owned by ``actor``; returns its id. Every file starts ready."""
        name = _checked_name(name, "project name")
        names = _checked_files(files)
        stored, max_attempts, lease_seconds = _checked_attributes(attributes)
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO projects (name, owner, attributes, max_attempts, lease_seconds, created)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (name, actor.user, stored, max_attempts, lease_seconds, self._clock()),
            )
            project_id = int(cursor.lastrowid or 0)
            db.executemany("INSERT INTO files (project_id, name) VALUES (?, ?)", [(project_id, n) for n in names])
        return project_id

    def project_status(self, actor: Actor, project_id: int) -> dict[str, Any]:
        """Counts per state, who holds what, what failed, and how much each worker did.

        Only for the project's owner or an administrator: the status names the workers and their users.
        """
        with self._reading() as db:
            row = _project_row(db, project_id)
            if row["owner"] != actor.user and not actor.is_admin:
                raise NotAllowed(f"project {project_id} is not yours: only its owner or an administrator may read it")
            counts = dict.fromkeys(("ready", "reserved", "done", "failed"), 0)
            for state, count in db.execute(
                "SELECT state, COUNT(*) FROM files WHERE project_id = ? GROUP BY state", (project_id,)
            ):
                counts[state] = count
            held = db.execute(
                "SELECT f.file_id, f.name, a.worker_id, a.holder, f.attempts, a.lease_expires"
                " FROM assignments a JOIN files f USING (file_id)"
                " WHERE a.project_id = ? AND a.ended IS NULL ORDER BY f.file_id",
                (project_id,),
            ).fetchall()
            failed = db.execute(
                "SELECT file_id, name, attempts FROM files WHERE project_id = ? AND state = 'failed' ORDER BY file_id",
                (project_id,),
            ).fetchall()
            by_worker = db.execute(
                "SELECT worker_id, COUNT(*) FROM assignments WHERE project_id = ? AND outcome = 'done'"
                " GROUP BY worker_id ORDER BY worker_id",
                (project_id,),
            ).fetchall()
        return {
            **_project_summary(row, counts),
            "attributes": json.loads(row["attributes"]),
            "max_attempts": row["max_attempts"],
            "lease_seconds": row["lease_seconds"],
            "held": [dict(h) for h in held],
            "failed_files": [dict(f) for f in failed],
            "done_by_worker": {worker: count for worker, count in by_worker},
        }

    def list_projects(self, actor: Actor, owner: str | None = None) -> list[dict[str, Any]]:
        """``actor``'s projects, or ``owner``'s (another user's only for an administrator), oldest first, with
        their counts."""
        if owner is None:
            owner = actor.user
        if owner != actor.user and not actor.is_admin:
            raise NotAllowed(f"only an administrator may list another user's projects (you are {actor.user})")
        query = (
            "SELECT p.*, SUM(f.state = 'ready') AS ready, SUM(f.state = 'reserved') AS reserved,"
            " SUM(f.state = 'done') AS done, SUM(f.state = 'failed') AS failed"
            " FROM projects p JOIN files f USING (project_id)"
            " WHERE p.owner = ? GROUP BY p.project_id ORDER BY p.project_id"
        )
        with self._reading() as db:
            rows = db.execute(query, (owner,)).fetchall()
        return [_project_summary(row, {k: row[k] for k in ("ready", "reserved", "done", "failed")}) for row in rows]

    # --------------------------------------------------------------------------------------------------- files

    def next_file(self, actor: Actor, project_id: int, worker_id: str) -> dict[str, Any] | None:
        """Hand the next ready file to ``worker_id``; ``None`` when no file is ready right now.

        A worker that already holds a file of this project gets that file again (with a fresh lease): it asked
        again because it never saw the first answer.
        """
        worker_id = _checked_name(worker_id, "worker_id", limit=200)
        with self._transaction() as db:
            project = _project_to_change(db, actor, project_id)
            now = self._clock()
            _expire_leases(db, project, now)
            lease_expires = now + project.lease_seconds
            held = db.execute(
                "SELECT assignment_id, file_id FROM assignments"
                " WHERE project_id = ? AND worker_id = ? AND holder = ? AND ended IS NULL",
                (project_id, worker_id, actor.user),
            ).fetchone()
            if held is not None:
                db.execute(
                    "UPDATE assignments SET lease_expires = ? WHERE assignment_id = ?",
                    (lease_expires, held["assignment_id"]),
                )
                return _file_answer(db, held["file_id"], worker_id, lease_expires)
            # The claim itself: one statement, and it only takes a file that is still ready. Least-tried first,
            # so a requeued file waits behind fresh ones instead of failing again at once on the same worker.
            claimed = db.execute(
                "UPDATE files SET state = 'reserved', attempts = attempts + 1"
                " WHERE file_id = (SELECT file_id FROM files WHERE project_id = ? AND state = 'ready'"
                "                  ORDER BY attempts, file_id LIMIT 1)"
                " AND state = 'ready' RETURNING file_id",
                (project_id,),
            ).fetchone()
            if claimed is None:
                return None
            db.execute(
                "INSERT INTO assignments (file_id, project_id, worker_id, holder, claimed, lease_expires)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (claimed["file_id"], project_id, worker_id, actor.user, now, lease_expires),
            )
            return _file_answer(db, claimed["file_id"], worker_id, lease_expires)

    def file_done(self, actor: Actor, project_id: int, file_id: int, worker_id: str) -> dict[str, Any]:
        """Mark a held file done. Reporting it again (the same worker) gives the same answer."""
        with self._transaction() as db:
            project = _project_to_change(db, actor, project_id)
            _expire_leases(db, project, self._clock())
            assignment = _open_assignment(db, actor, project_id, file_id, worker_id)
            if assignment is None:
                if _last_outcome(db, file_id, worker_id) == "done":
                    return {"file_id": file_id, "state": "done", "repeated": True}
                raise NotHeld(_not_held_message(db, project_id, file_id, worker_id))
            _end_assignment(db, assignment, "done", self._clock())
            db.execute("UPDATE files SET state = 'done' WHERE file_id = ?", (file_id,))
            return {"file_id": file_id, "state": "done", "repeated": False}

    def file_failed(
        self, actor: Actor, project_id: int, file_id: int, worker_id: str, *, retry: bool = True
    ) -> dict[str, Any]:
        """Give a held file back: ready again if ``retry`` and it has attempts left, else failed for good.

        Reporting it again (the same worker, before it got the file back) tells where the file is now.
        """
        with self._transaction() as db:
            project = _project_to_change(db, actor, project_id)
            _expire_leases(db, project, self._clock())
            assignment = _open_assignment(db, actor, project_id, file_id, worker_id)
            row = db.execute("SELECT state, attempts FROM files WHERE file_id = ?", (file_id,)).fetchone()
            answer = {"file_id": file_id, "max_attempts": project.max_attempts, "repeated": assignment is None}
            if assignment is None:
                if _last_outcome(db, file_id, worker_id) == "failed":  # asked again: say where the file is now
                    return {**answer, "state": row["state"], "attempts": row["attempts"]}
                raise NotHeld(_not_held_message(db, project_id, file_id, worker_id))
            state = "ready" if retry and row["attempts"] < project.max_attempts else "failed"
            _end_assignment(db, assignment, "failed", self._clock())
            db.execute("UPDATE files SET state = ? WHERE file_id = ?", (state, file_id))
            return {**answer, "state": state, "attempts": row["attempts"]}


# ---------------------------------------------------------------------------------------------------- helpers


def _checked_name(value: Any, what: str, *, limit: int = MAX_NAME_LENGTH) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{what} must be a non-empty string")
    if len(value) > limit:
        raise InvalidInput(f"{what} is longer than {limit} characters")
    return value


def _checked_files(files: Sequence[Any]) -> list[str]:
    if not isinstance(files, list | tuple) or not files:
        raise InvalidInput("files must be a non-empty list of file names")
    if len(files) > MAX_FILES_PER_PROJECT:
        raise InvalidInput(f"a project holds at most {MAX_FILES_PER_PROJECT} files, not {len(files)}")
    names = [_checked_name(name, f"file {i}") for i, name in enumerate(files)]
    if len(set(names)) != len(names):
        raise InvalidInput("file names must be unique within a project")
    return names


def _checked_attributes(attributes: Any) -> tuple[str, int, float]:
    """The attributes as stored JSON, plus the two the dispatcher itself reads."""
    if not isinstance(attributes, dict) or not all(isinstance(key, str) for key in attributes):
        raise InvalidInput("attributes must be a dict with string keys")
    try:
        stored = json.dumps(attributes, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"attributes must hold JSON values only ({exc})") from None
    if len(stored) > MAX_ATTRIBUTES_BYTES:
        raise InvalidInput(f"attributes take more than {MAX_ATTRIBUTES_BYTES} bytes as JSON")
    max_attempts = attributes.get("max_attempts", DEFAULT_MAX_ATTEMPTS)
    # bool is an int in Python: refuse it explicitly, max_attempts=True is a mistake, not 1.
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or not 1 <= max_attempts <= 100:
        raise InvalidInput("attributes['max_attempts'] must be an integer from 1 to 100")
    lease = attributes.get("lease_seconds", DEFAULT_LEASE_SECONDS)
    if isinstance(lease, bool) or not isinstance(lease, int | float) or not 0 < lease <= 86_400:
        raise InvalidInput("attributes['lease_seconds'] must be a number of seconds, above 0 and at most 86400")
    return stored, max_attempts, float(lease)


def _project_row(db: sqlite3.Connection, project_id: int) -> sqlite3.Row:
    if isinstance(project_id, bool) or not isinstance(project_id, int):
        raise InvalidInput(f"project_id must be an integer, not {project_id!r}")
    row = db.execute("SELECT * FROM projects WHERE project_id = ?", (project_id,)).fetchone()
    if row is None:
        raise UnknownProject(f"unknown project {project_id}")
    return row  # type: ignore[no-any-return]


def _project_to_change(db: sqlite3.Connection, actor: Actor, project_id: int) -> _Project:
    """The project, if ``actor`` may change it: its owner, or an administrator."""
    row = _project_row(db, project_id)
    if row["owner"] != actor.user and not actor.is_admin:
        raise NotAllowed(
            f"project {project_id} belongs to {row['owner']}: only its owner or an administrator may change it"
        )
    return _Project(project_id, row["name"], row["owner"], row["max_attempts"], row["lease_seconds"])


def _project_summary(row: sqlite3.Row, counts: dict[str, int]) -> dict[str, Any]:
    counts = {state: int(count or 0) for state, count in counts.items()}
    return {
        "project_id": row["project_id"],
        "name": row["name"],
        "owner": row["owner"],
        "created": row["created"],
        "counts": counts,
        "total": sum(counts.values()),
        # Finished: nothing left to hand out and nobody holding anything.
        "finished": counts["ready"] == 0 and counts["reserved"] == 0,
    }


def _expire_leases(db: sqlite3.Connection, project: _Project, now: float) -> None:
    """Take files back from workers that went silent: requeue them, or fail those out of attempts."""
    expired = db.execute(
        "SELECT assignment_id, file_id FROM assignments WHERE project_id = ? AND ended IS NULL AND lease_expires < ?",
        (project.project_id, now),
    ).fetchall()
    for assignment in expired:
        _end_assignment(db, assignment, "expired", now)
        db.execute(
            "UPDATE files SET state = CASE WHEN attempts < ? THEN 'ready' ELSE 'failed' END WHERE file_id = ?",
            (project.max_attempts, assignment["file_id"]),
        )


def _open_assignment(
    db: sqlite3.Connection, actor: Actor, project_id: int, file_id: int, worker_id: str
) -> sqlite3.Row | None:
    """The open assignment of ``file_id`` to ``worker_id`` run by ``actor`` (any user, for an administrator)."""
    row = db.execute(
        "SELECT assignment_id, holder FROM assignments"
        " WHERE project_id = ? AND file_id = ? AND worker_id = ? AND ended IS NULL",
        (project_id, file_id, worker_id),
    ).fetchone()
    if row is None or (row["holder"] != actor.user and not actor.is_admin):
        return None
    return row  # type: ignore[no-any-return]


def _end_assignment(db: sqlite3.Connection, assignment: sqlite3.Row, outcome: str, now: float) -> None:
    db.execute(
        "UPDATE assignments SET ended = ?, outcome = ? WHERE assignment_id = ?",
        (now, outcome, assignment["assignment_id"]),
    )


def _last_outcome(db: sqlite3.Connection, file_id: int, worker_id: str) -> str | None:
    """How ``worker_id``'s latest turn with the file ended (``None``: it never had the file)."""
    row = db.execute(
        "SELECT outcome FROM assignments WHERE file_id = ? AND worker_id = ? ORDER BY assignment_id DESC LIMIT 1",
        (file_id, worker_id),
    ).fetchone()
    return None if row is None else str(row["outcome"])


def _not_held_message(db: sqlite3.Connection, project_id: int, file_id: int, worker_id: str) -> str:
    """Say why, without guessing: the file's state and, if someone holds it, who."""
    row = db.execute("SELECT state FROM files WHERE file_id = ? AND project_id = ?", (file_id, project_id)).fetchone()
    if row is None:
        return f"project {project_id} has no file {file_id}"
    return f"worker {worker_id!r} does not hold file {file_id} of project {project_id} (the file is {row['state']})"


def _file_answer(db: sqlite3.Connection, file_id: int, worker_id: str, lease_expires: float) -> dict[str, Any]:
    row = db.execute("SELECT file_id, name, attempts FROM files WHERE file_id = ?", (file_id,)).fetchone()
    return {
        "file_id": row["file_id"],
        "name": row["name"],
        "attempt": row["attempts"],
        "worker_id": worker_id,
        "lease_expires": lease_expires,
    }
