"""Who is signed in to the portal, and how the portal calls the Dispatcher service as that person.

The portal authenticates people (here: a dev sign-in; in production: client certificates or an identity provider,
see ``README.md``) and maps each one to a registered grid identity, a :class:`PortalUser` with a DN and a group.
It never gives the service its own identity for a user's request: :class:`DispatcherGateway` wraps every call in
``rpcframework.delegate(dn, group)``, so the one shared :class:`AsyncDispatcherClient` (an ``AsyncClient`` holding
the portal's host certificate) sends ``[dn, group]`` as extra credentials and the service authorizes, and records,
the user. The service honours that only because the portal's host is registered with ``TrustedHost``. The calls
are awaited on the web server's event loop: no thread per call.
"""

from __future__ import annotations

import errno
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import rpcframework
from examples.dispatcher.client import DispatcherClient
from rpcframework import DReturn
from rpcframework.client.aio import AsyncClient

__all__ = ["AsyncDispatcherClient", "DispatcherGateway", "NotYourProject", "PortalUser", "ServiceRefused"]

#: ``Errno`` of an authorization refusal (DIRAC's ``ENOAUTH``, "Unauthorized query").
UNAUTHORIZED_ERRNO = 1111


@dataclass(frozen=True)
class PortalUser:
    """A person the portal acts for: a name to show, the registered DN and the group to act in."""

    name: str
    dn: str
    group: str

    def to_session(self) -> dict[str, str]:
        return {"name": self.name, "dn": self.dn, "group": self.group}

    @classmethod
    def from_session(cls, data: Any) -> PortalUser | None:
        if not isinstance(data, dict) or not all(isinstance(data.get(key), str) for key in ("name", "dn", "group")):
            return None
        return cls(data["name"], data["dn"], data["group"])


class ServiceRefused(Exception):
    """A service call returned ``S_ERROR``: its message and errno, for the page that shows it."""

    def __init__(self, message: str, errno: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.errno = errno

    @property
    def unauthorized(self) -> bool:
        return self.errno == UNAUTHORIZED_ERRNO


class NotYourProject(ServiceRefused):
    """The project exists but belongs to someone else: the portal does not show it."""


class AsyncDispatcherClient(AsyncClient):
    """The Dispatcher's client for asyncio code: the remote methods of :class:`DispatcherClient`, awaited."""

    serverURL = DispatcherClient.serverURL
    remoteMethods = DispatcherClient.remoteMethods


class DispatcherGateway:
    """The portal's single, shared client of the Dispatcher; every call is made on behalf of a user.

    One ``AsyncDispatcherClient`` serves every request: it reuses its connections, and the identity of a call comes
    from the delegation context, which belongs to the request's task (a ``ContextVar``), never from the client.
    """

    def __init__(self, client: AsyncDispatcherClient) -> None:
        self.client = client

    async def aclose(self) -> None:
        """Close the client's connections (at the web server's shutdown, on its event loop)."""
        await self.client.aclose()

    async def call_as(self, user: PortalUser, call: Callable[[AsyncDispatcherClient], Awaitable[DReturn]]) -> Any:
        """Await ``call(client)`` for ``user`` and return its value; ``S_ERROR`` raises :class:`ServiceRefused`."""
        with rpcframework.delegate(dn=user.dn, group=user.group):
            result = await call(self.client)
        if not result["OK"]:
            raise ServiceRefused(str(result.get("Message", "")), result.get("Errno"))
        return result["Value"]

    async def whoami(self, user: PortalUser) -> dict[str, Any]:
        """The identity the service sees when the portal calls for ``user`` (``username``, ``group``, ``DN``...)."""
        value = await self.call_as(user, lambda client: client.whoami())
        return dict(value) if isinstance(value, Mapping) else {}

    async def my_projects(self, user: PortalUser) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Who the service sees, and that user's projects (``list_projects()`` lists the caller's own)."""
        seen = await self.whoami(user)
        projects = await self.call_as(user, lambda client: client.list_projects())
        return seen, [dict(project) for project in projects]

    async def create_project(self, user: PortalUser, name: str, files: list[str]) -> int:
        """A new project owned by ``user`` (the service takes the owner from the delegated identity)."""
        attributes = {"created_with": "portal"}
        return int(await self.call_as(user, lambda client: client.create_project(name, list(files), attributes)))

    async def project_of(self, user: PortalUser, project_id: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """Who the service sees, and the status of ``project_id`` if it is theirs; else :class:`NotYourProject`.

        The Dispatcher itself refuses (``EACCES``) to show a project to anyone but its owner or an administrator;
        the portal turns that refusal into its own "not one of your projects" (a 403 page).
        """
        seen = await self.whoami(user)
        try:
            status = dict(await self.call_as(user, lambda client: client.project_status(project_id)))
        except ServiceRefused as refused:
            if refused.errno == errno.EACCES:
                raise NotYourProject(f"project {project_id} is not one of your projects", errno.EACCES) from refused
            raise
        return seen, status
