"""Who may make the proposals of one connection, and who answers for what it does.

A :class:`Admission` belongs to one :class:`~rpcframework.server.connection.Channel` (so it is used by one thread at
a time, like its channel). For each proposal it decides, in this order: a peer problem (a limited proxy where they
are refused), a suspended identity, authorization (cached per proposal object, configuration snapshot and the
guard's identity generation, so the steady state of a connection pays one comparison), and for a file transfer a
transfer slot (``MaxTransfers``, ``MaxTransfersPerIdentity``), held until the transfer ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from rpcframework.protocol.messages import ActionType, Proposal
from rpcframework.returnvalues import ENOAUTH, S_ERROR, DReturn
from rpcframework.security.authz import Caller
from rpcframework.server.guard import proposal_identity
from rpcframework.server.service import Service

if TYPE_CHECKING:
    from rpcframework.server.guard import Ticket

__all__ = ["Admission"]


class Admission:
    """The proposal decisions of one connection from ``peer_dn`` at ``peer_address`` to ``services``."""

    __slots__ = (
        "_auth_cache",
        "_transfer_slot",
        "peer_address",
        "peer_dn",
        "peer_group",
        "peer_problem",
        "services",
        "ticket",
    )

    def __init__(
        self, peer_dn: str | None, peer_group: str | None, peer_address: str, services: Mapping[str, Service]
    ) -> None:
        self.peer_dn = peer_dn
        self.peer_group = peer_group
        self.peer_address = peer_address
        self.services = services
        # Set by the reactor's connection guard: whom abuse is charged to, and a peer to refuse outright.
        self.ticket: Ticket | None = None
        self.peer_problem: str | None = None
        # (proposal, configuration snapshot, caller, the guard's identity generation) of the last authorization.
        self._auth_cache: tuple[Proposal, object, Caller, int] | None = None
        self._transfer_slot: tuple[Service, str] | None = None  # (service, identity) of a transfer under way

    def admit(self, service: Service, proposal: Proposal) -> Caller | tuple[DReturn, bool]:
        """The caller, or the refusal to send and whether it is a strike against the caller."""
        cached = self._auth_cache
        if (
            cached is not None
            and cached[0] is proposal
            and cached[1] is service.config_tree()
            and self.peer_problem is None
            and cached[3] == self._identity_generation()  # bumped by every suspension
            and proposal.action_type is ActionType.RPC  # a transfer takes a slot each time
        ):
            return cached[2]  # the steady state: nothing changed since this very proposal was admitted
        suspension = self._suspension(proposal)  # a lookup only while some identity is suspended
        if suspension is not None:
            return suspension, False
        caller = self._authorize(service, proposal)
        if not isinstance(caller, Caller):
            return caller, True
        if proposal.action_type is ActionType.FileTransfer:  # a slot, taken until the transfer ends
            identity = self.identity_of(proposal) or self.peer_address
            busy = service.take_transfer_slot(identity)
            if busy is not None:
                return busy, False
            self._transfer_slot = (service, identity)
        return caller

    def end_transfer(self) -> None:
        """Give back the transfer slot, if one is held (idempotent)."""
        slot, self._transfer_slot = self._transfer_slot, None
        if slot is not None:
            slot[0].transfer_slots.give_back(slot[1])

    def identity_of(self, proposal: Proposal | None) -> str | None:
        """Who answers for what the connection does under ``proposal`` (``None``: its address does)."""
        return proposal_identity(self.peer_dn, proposal, self.services)

    def charge(self, what: str, proposal: Proposal | None) -> None:
        """Count ``what`` against whoever answers for it: the caller's identity, or the address of a peer that
        never authenticated."""
        if self.ticket is not None:
            self.ticket.charge(what, self.identity_of(proposal))

    def _authorize(self, service: Service, proposal: Proposal) -> Caller | DReturn:
        if self.peer_problem is not None:
            return S_ERROR(ENOAUTH, self.peer_problem)
        tree = service.config_tree()
        cached = self._auth_cache
        generation = self._identity_generation()
        if cached is not None and cached[0] is proposal and cached[1] is tree and cached[3] == generation:
            return cached[2]
        decision = service.authorize(proposal, self.peer_dn, self.peer_group)
        if isinstance(decision, Caller):
            self._auth_cache = (proposal, tree, decision, generation)
        return decision

    def _suspension(self, proposal: Proposal) -> DReturn | None:
        """The refusal for a proposal whose caller is suspended (``docs/security.md``, "Who pays for abuse")."""
        ticket = self.ticket
        if ticket is None or not ticket.guard.any_suspended:
            return None
        return ticket.suspension_refusal(self.identity_of(proposal))

    def _identity_generation(self) -> int:
        ticket = self.ticket
        return ticket.guard.identity_generation if ticket is not None else 0
