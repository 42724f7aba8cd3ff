"""Events, states and sentinels of the sans-IO connections (:mod:`rpcframework.protocol.rpc`).

``next_event()`` returns one of the frozen dataclasses below, or a :class:`Sentinel`:

* ``NEED_DATA``: feed more bytes with ``receive_data()``;
* ``PAUSED``: the machine waits for *our* side (the server must accept/refuse or send a result; a non-RPC action
  was handed over). Reading more is pointless until we act.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from rpcframework.codec import Encoding
from rpcframework.errors import RPCFrameworkError
from rpcframework.protocol.messages import Extensions, Proposal, TraceContext
from rpcframework.returnvalues import DErrorReturn, DReturn

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "ArgumentsReceived",
    "CallResult",
    "ConnectionClosed",
    "ConnectionState",
    "Event",
    "LocalProtocolError",
    "PongReceived",
    "ProposalAccepted",
    "ProposalReceived",
    "ProposalRefused",
    "Sentinel",
]


class LocalProtocolError(RPCFrameworkError):
    """We (not the peer) tried something the protocol does not allow in this state: a programming error."""


class Sentinel(enum.Enum):
    """Non-event results of ``next_event()``."""

    NEED_DATA = "NEED_DATA"
    PAUSED = "PAUSED"


NEED_DATA: Final = Sentinel.NEED_DATA
PAUSED: Final = Sentinel.PAUSED


class ConnectionState(enum.Enum):
    """Where one side of a connection is in the exchange (the same names serve both roles)."""

    #: Client: may send a proposal. Server: waiting for one.
    IDLE = "IDLE"
    #: Client: proposal sent, waiting for the ack. Server: proposal received, must accept or refuse.
    PROPOSED = "PROPOSED"
    #: Client: may send the arguments. Server: waiting for them.
    ACCEPTED = "ACCEPTED"
    #: Client: arguments sent, waiting for the result. Server: arguments received, must send the result.
    CALLING = "CALLING"
    #: A non-RPC action (file transfer, connection, message) was accepted; another machine owns the stream.
    HANDED_OVER = "HANDED_OVER"
    #: The exchange is over and the connection is not reused: close it.
    CLOSED = "CLOSED"
    #: A protocol error happened; send what ``data_to_send()`` holds, then close.
    ERROR = "ERROR"


@dataclass(frozen=True, slots=True)
class ProposalAccepted:
    """Client: the server acked the proposal. ``extensions`` is what the connection negotiated (None: DIRAC)."""

    extensions: Extensions | None


@dataclass(frozen=True, slots=True)
class ProposalRefused:
    """Client: the server refused the proposal with this ``S_ERROR``."""

    error: DErrorReturn


@dataclass(frozen=True, slots=True)
class CallResult:
    """Client: the server's result envelope."""

    result: DReturn


@dataclass(frozen=True, slots=True)
class ProposalReceived:
    """Server: a valid proposal, and the encoding the client used (replies use it too).

    The caller's trace context is :attr:`trace`, not the proposal's ``trace_context`` (which the server's events
    never carry): a traced client sends a new one with every call, and the proposal without it is the same object
    call after call, which the server's caches are keyed by."""

    proposal: Proposal
    encoding: Encoding
    trace: TraceContext | None = None


@dataclass(frozen=True, slots=True)
class ArgumentsReceived:
    """Server: the call's arguments (``kwargs`` is empty unless the ``kwargs`` extension was negotiated)."""

    args: list[Any]
    kwargs: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PongReceived:
    """The peer answered one of our keepalive pings."""

    id: str


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The exchange is over (or the peer closed cleanly between exchanges): close the transport."""


Event: TypeAlias = (
    ProposalAccepted
    | ProposalRefused
    | CallResult
    | ProposalReceived
    | ArgumentsReceived
    | PongReceived
    | ConnectionClosed
)
