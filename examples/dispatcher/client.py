"""``DispatcherClient``: the client side of ``DataManagement/Dispatcher``, as its author ships it.

Build it once and share it between threads (it reuses connections)::

    client = DispatcherClient()                       # URLs from /Systems/DataManagement/URLs/Dispatcher
    project_id = client.create_project("run-42", ["a.root", "b.root"], {"max_attempts": 2})["Value"]
    result = client.next_file(project_id, "worker-1")  # S_OK({"file_id": 1, "name": "a.root", ...}) or S_OK(None)
    client.file_done(project_id, result["Value"]["file_id"], "worker-1")

Every call returns DIRAC's ``S_OK``/``S_ERROR`` envelope. The service's refusals carry an ``Errno``: ``ENOENT``
(unknown project), ``EACCES`` (not the owner), ``EPERM`` (a file the worker does not hold), ``EINVAL`` (bad
input); failures of the call itself (no instance reachable, a deadline) come back as ``S_ERROR`` too.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rpcframework import DReturn
from rpcframework.client import Client


class DispatcherClient(Client):
    """Client of the ``DataManagement/Dispatcher`` service (``examples/dispatcher/handler.py``).

    Every wrapper takes DIRAC's per-call settings: ``timeout`` (seconds, a deadline for the whole call) and
    ``url`` (one instance, or another service, instead of ``serverURL``).
    """

    serverURL = "DataManagement/Dispatcher"
    remoteMethods: ClassVar[tuple[str, ...]] = (
        "create_project",
        "next_file",
        "file_done",
        "file_failed",
        "project_status",
        "list_projects",
    )

    def create_project(
        self,
        name: str,
        files: list[str],
        attributes: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        url: str | None = None,
    ) -> DReturn:
        """Create a project owned by you; ``S_OK(project_id)``.

        ``attributes`` are kept with the project; the service reads ``max_attempts`` (how often a file is handed
        out before it fails for good, default 3) and ``lease_seconds`` (how long a worker may hold a file without
        news, default 600).
        """
        return self.executeRPC("create_project", name, list(files), dict(attributes or {}), timeout=timeout, url=url)

    def next_file(
        self, project_id: int, worker_id: str, *, timeout: float | None = None, url: str | None = None
    ) -> DReturn:
        """Reserve the next file for ``worker_id``.

        ``S_OK({"file_id", "name", "attempt", "worker_id", "lease_expires"})``, or ``S_OK(None)`` when no file is
        ready right now (see :meth:`project_status`'s ``finished`` to tell "wait" from "all done"). Asking again
        before reporting returns the same file: safe to retry.
        """
        return self.executeRPC("next_file", project_id, worker_id, timeout=timeout, url=url)

    def file_done(
        self, project_id: int, file_id: int, worker_id: str, *, timeout: float | None = None, url: str | None = None
    ) -> DReturn:
        """Report a file processed. ``worker_id`` must hold it; reporting twice is answered as the first time."""
        return self.executeRPC("file_done", project_id, file_id, worker_id, timeout=timeout, url=url)

    def file_failed(
        self,
        project_id: int,
        file_id: int,
        worker_id: str,
        retry: bool = True,
        *,
        timeout: float | None = None,
        url: str | None = None,
    ) -> DReturn:
        """Report a file that could not be processed; ``S_OK({"state": "ready" | "failed", "attempts", ...})``.

        With ``retry`` the file goes back to the queue until it used up the project's ``max_attempts``. Reporting
        it again (after a lost reply) answers ``repeated: True`` and the file's state now.
        """
        # Positional, so the call works against any DISET peer (DIRAC servers take no keyword arguments).
        return self.executeRPC("file_failed", project_id, file_id, worker_id, retry, timeout=timeout, url=url)

    def project_status(self, project_id: int, *, timeout: float | None = None, url: str | None = None) -> DReturn:
        """Counts per state, ``finished``, who holds which file, the failed files, files done per worker.

        For the project's owner or an administrator; anyone else gets ``S_ERROR`` with ``EACCES``.
        """
        return self.executeRPC("project_status", project_id, timeout=timeout, url=url)

    def list_projects(
        self, owner: str | None = None, *, timeout: float | None = None, url: str | None = None
    ) -> DReturn:
        """The caller's projects, or ``owner``'s (another user's only for an administrator), with their counts."""
        if owner is None:
            return self.executeRPC("list_projects", timeout=timeout, url=url)
        return self.executeRPC("list_projects", owner, timeout=timeout, url=url)
