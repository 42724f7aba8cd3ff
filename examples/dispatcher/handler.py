"""The ``DataManagement/Dispatcher`` service: hands the files of a project to workers, one worker per file.

A project is a list of file names plus free-form attributes. Workers ask for the next file, process it, and report
it done or failed; a failed file is handed out again until it used up ``max_attempts`` (an attribute, default 3).
The service remembers who holds which file, in SQLite (:mod:`examples.dispatcher.store`), so

* a restart loses nothing, and several instances can share one database file (on one host, or a shared disk that
  supports SQLite's locking);
* the rules hold whatever the number of instances: a file goes to one worker at a time, and only the project's
  owner (the user who created it) or a caller with the ``DispatcherAdmin`` property may change a project, read
  its status, or list it.

Where the database lives: ``DispatcherHandler.with_database(path)`` makes a handler class bound to ``path`` (what
``run_demo.py`` and the tests do), or set ``DISPATCHER_DB`` for ``rpcframework serve``::

    DISPATCHER_DB=/var/lib/dispatcher.sqlite rpcframework serve examples.dispatcher.handler:DispatcherHandler \\
        --name DataManagement/Dispatcher --port 9135

Call it with :class:`examples.dispatcher.client.DispatcherClient`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from examples.dispatcher.store import Actor, DispatcherError, DispatcherStore
from rpcframework.server import S_ERROR, S_OK, DReturn, RequestHandler

#: The environment variable naming the database when the class is not bound to one.
DATABASE_ENV = "DISPATCHER_DB"
#: Callers with this property may change any project (and report files for any user's workers).
ADMIN_PROPERTY = "DispatcherAdmin"


class DispatcherHandler(RequestHandler):
    """Projects of files, handed out to workers one file at a time; state in SQLite."""

    #: The SQLite file; empty means ``$DISPATCHER_DB``. Set it with :meth:`with_database`.
    database: ClassVar[str] = ""
    admin_property: ClassVar[str] = ADMIN_PROPERTY
    store: ClassVar[DispatcherStore]

    @classmethod
    def with_database(cls, path: str | Path) -> type[DispatcherHandler]:
        """A handler class bound to ``path``, with a store of its own.

        Each service instance gets its own class, hence its own connection, as separate processes would: two
        instances on one file then coordinate through SQLite, not through shared Python objects.
        """
        return type(cls.__name__, (cls,), {"database": str(path), "__module__": cls.__module__})

    @classmethod
    def initializeHandler(cls, serviceInfo: Mapping[str, Any]) -> DReturn:
        path = cls.database or os.environ.get(DATABASE_ENV, "")
        if not path:
            return S_ERROR(f"no database: set {DATABASE_ENV} or use DispatcherHandler.with_database(path)")
        cls.close_store()  # a class started again (a restart in the same process) reopens its file
        cls.store = DispatcherStore(path)
        return S_OK()

    @classmethod
    def close_store(cls) -> None:
        """Close this class's database connection, if it opened one (call it after the service stopped)."""
        store = cls.__dict__.get("store")
        if store is not None:
            store.close()
            del cls.store

    def initialize(self) -> None:
        # Ownership comes from the verified identity, never from an argument the caller could choose.
        credentials = self.getRemoteCredentials()
        self.actor = Actor(
            user=str(credentials.get("username", "anonymous")),
            # Property names compare case-insensitively, as in authorization rules.
            is_admin=self.admin_property.lower() in {str(p).lower() for p in credentials.get("properties", ())},
        )

    def _answer(self, operation: Callable[[], Any]) -> DReturn:
        """``S_OK`` with the store's answer, or ``S_ERROR`` with its refusal.

        Only refusals become messages; anything else (a broken database) raises, and the framework answers a
        generic server error with a reference, keeping SQL and paths out of the caller's view.
        """
        try:
            return S_OK(operation())
        except DispatcherError as exc:
            return S_ERROR(exc.errno, str(exc))

    types_create_project: ClassVar[list[Any]] = [str, (list, tuple), dict]
    auth_create_project: ClassVar[list[str]] = ["authenticated"]

    def export_create_project(self, name: str, files: list[str], attributes: dict[str, Any]) -> DReturn:
        """Create a project owned by the caller; returns its id.

        ``attributes`` is kept as given; the dispatcher reads ``max_attempts`` (default 3) and ``lease_seconds``
        (default 600: a file held longer without news goes back to the queue).
        """
        return self._answer(lambda: self.store.create_project(self.actor, name, files, attributes))

    types_next_file: ClassVar[list[Any]] = [int, str]
    auth_next_file: ClassVar[list[str]] = ["authenticated"]

    def export_next_file(self, project_id: int, worker_id: str) -> DReturn:
        """Reserve the next file for ``worker_id``: ``{file_id, name, attempt, ...}``, or ``None`` if none is ready."""
        return self._answer(lambda: self.store.next_file(self.actor, project_id, worker_id))

    types_file_done: ClassVar[list[Any]] = [int, int, str]
    auth_file_done: ClassVar[list[str]] = ["authenticated"]

    def export_file_done(self, project_id: int, file_id: int, worker_id: str) -> DReturn:
        """``worker_id`` finished ``file_id``; it must hold it."""
        return self._answer(lambda: self.store.file_done(self.actor, project_id, file_id, worker_id))

    types_file_failed: ClassVar[list[Any]] = [int, int, str]
    kwtypes_file_failed: ClassVar[dict[str, Any]] = {"retry": bool}
    auth_file_failed: ClassVar[list[str]] = ["authenticated"]

    def export_file_failed(self, project_id: int, file_id: int, worker_id: str, retry: bool = True) -> DReturn:
        """``worker_id`` could not process ``file_id``: requeue it (``retry``, attempts left) or fail it for good.

        ``retry`` is an optional fourth argument, so DIRAC clients (positional arguments only) can pass it too.
        """
        return self._answer(lambda: self.store.file_failed(self.actor, project_id, file_id, worker_id, retry=retry))

    types_project_status: ClassVar[list[Any]] = [int]
    auth_project_status: ClassVar[list[str]] = ["authenticated"]

    def export_project_status(self, project_id: int) -> DReturn:
        """Counts per state, who holds which file, the failed files, and files done per worker (owner or admin)."""
        return self._answer(lambda: self.store.project_status(self.actor, project_id))

    types_list_projects: ClassVar[list[Any]] = []
    kwtypes_list_projects: ClassVar[dict[str, Any]] = {"owner": str | None}
    auth_list_projects: ClassVar[list[str]] = ["authenticated"]

    def export_list_projects(self, owner: str | None = None) -> DReturn:
        """The caller's projects, or ``owner``'s (another user's only for an admin), with their counts."""
        return self._answer(lambda: self.store.list_projects(self.actor, owner))
