"""The three things a proposal's extra credentials can say: nothing, "I am a host", or "I act for this user".

They are security facts (who is calling, on whose behalf) that the wire protocol carries, so they live here, below
the protocol: :mod:`rpcframework.protocol.messages` reads and writes them, :mod:`rpcframework.security.authz` decides
on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, TypeAlias

__all__ = [
    "HOST_CREDENTIALS",
    "NO_EXTRA_CREDENTIALS",
    "DelegatedIdentity",
    "ExtraCredentials",
    "HostCredentials",
    "NoExtraCredentials",
]


@dataclass(frozen=True, slots=True)
class NoExtraCredentials:
    """A normal user call: wire form ``""``."""

    def to_wire(self) -> str:
        return ""


@dataclass(frozen=True, slots=True)
class HostCredentials:
    """The client uses a host certificate: wire form ``"hosts"``."""

    def to_wire(self) -> str:
        return "hosts"


@dataclass(frozen=True, slots=True)
class DelegatedIdentity:
    """A trusted host acts for a user: wire form ``[dn, group]``."""

    dn: str
    group: str

    def to_wire(self) -> list[str]:
        return [self.dn, self.group]


ExtraCredentials: TypeAlias = NoExtraCredentials | HostCredentials | DelegatedIdentity
NO_EXTRA_CREDENTIALS: Final = NoExtraCredentials()
HOST_CREDENTIALS: Final = HostCredentials()
