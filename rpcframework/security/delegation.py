"""Delegated identity on the client side: "call this service on behalf of that user".

A web portal holding a host certificate with the ``TrustedHost`` property calls services for its logged-in
users. The identity to act for lives in a :class:`contextvars.ContextVar`, so it follows the code that set it
through threads started with a copied context and through asyncio tasks, and never leaks into another request::

    with delegate(dn="/DC=org/DC=example/CN=Alice", group="dirac_user"):
        client.list_projects()        # the proposal carries [dn, group]; the service sees Alice

:class:`ThreadConfig` is the DISET-style facade (``setDN``/``setGroup``/``reset``) over the same variable, for code
written for DIRAC. Clients read the current value with :func:`current_delegation`; the explicit client options
``delegatedDN``/``delegatedGroup`` take precedence over it.

The server decides whether to honour delegation (only from a registered host with ``TrustedHost``); see
:mod:`rpcframework.security.authz`.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from rpcframework.errors import ConfigurationError

__all__ = ["Delegation", "ThreadConfig", "current_delegation", "delegate"]


@dataclass(frozen=True)
class Delegation:
    """The user a call is made for: their DN and (optionally) the group to act in."""

    dn: str
    group: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.dn, str) or not self.dn.startswith("/"):
            raise ConfigurationError(f"delegated DN must be a grid DN such as /DC=org/DC=x/CN=name, got {self.dn!r}")
        if self.group is not None and (not isinstance(self.group, str) or not self.group):
            raise ConfigurationError(f"delegated group must be a non-empty string, got {self.group!r}")


# The one designed piece of module state: a context variable is per-context by construction, never shared.
_DELEGATION: contextvars.ContextVar[Delegation | None] = contextvars.ContextVar("rpcframework_delegation", default=None)


def current_delegation() -> Delegation | None:
    """The delegation in force for the running context, if any."""
    return _DELEGATION.get()


@contextmanager
def delegate(dn: str, group: str | None = None) -> Iterator[Delegation]:
    """Make every call inside the block on behalf of ``dn`` (in ``group``); nesting restores the outer value."""
    token = _DELEGATION.set(Delegation(dn, group))
    try:
        yield _DELEGATION.get()  # type: ignore[misc]
    finally:
        _DELEGATION.reset(token)


class ThreadConfig:
    """DISET's ``ThreadConfig`` over the same context variable (``setDN``, ``setGroup``, ``reset`` ...).

    DIRAC's original was a per-thread singleton; this one is per context, which is the same thing for threads and
    also right for asyncio tasks. Setting a group without a DN is allowed until the next call is made, where a
    group alone is an error.
    """

    def setDN(self, dn: str) -> None:
        current = _DELEGATION.get()
        _DELEGATION.set(Delegation(dn, current.group if current else None))

    def setGroup(self, group: str) -> None:
        current = _DELEGATION.get()
        if current is None:
            raise ConfigurationError("ThreadConfig.setGroup needs a DN first: call setDN(dn) before setGroup(group)")
        _DELEGATION.set(Delegation(current.dn, group))

    def getDN(self) -> str | None:
        current = _DELEGATION.get()
        return current.dn if current else None

    def getGroup(self) -> str | None:
        current = _DELEGATION.get()
        return current.group if current else None

    def getID(self) -> tuple[str | None, str | None]:
        return self.getDN(), self.getGroup()

    def setID(self, dn: str, group: str | None) -> None:
        _DELEGATION.set(Delegation(dn, group))

    def reset(self) -> None:
        _DELEGATION.set(None)
