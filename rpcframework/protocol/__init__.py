"""Sans-IO DISET protocol: framing, typed messages, and the client/server state machines (no sockets here).

See ``docs/protocol.md``. Modules: :mod:`.framing`, :mod:`.messages`, :mod:`.events`, :mod:`.rpc`.
"""

from __future__ import annotations

from rpcframework.protocol.events import (
    NEED_DATA,
    PAUSED,
    ArgumentsReceived,
    CallResult,
    ConnectionClosed,
    ConnectionState,
    Event,
    LocalProtocolError,
    PongReceived,
    ProposalAccepted,
    ProposalReceived,
    ProposalRefused,
    Sentinel,
)
from rpcframework.protocol.framing import KEEPALIVE_MARK, Frame, FrameDecoder, encode_frame, encode_keepalive_frame
from rpcframework.protocol.messages import (
    PROTOCOL_VERSION,
    ActionType,
    DelegatedIdentity,
    Extensions,
    ExtraCredentials,
    Feature,
    HostCredentials,
    KeepAlive,
    NoExtraCredentials,
    Proposal,
    TransferDirection,
)
from rpcframework.protocol.rpc import ClientConnection, ProposalFrames, ServerConnection

__all__ = [
    "KEEPALIVE_MARK",
    "NEED_DATA",
    "PAUSED",
    "PROTOCOL_VERSION",
    "ActionType",
    "ArgumentsReceived",
    "CallResult",
    "ClientConnection",
    "ConnectionClosed",
    "ConnectionState",
    "DelegatedIdentity",
    "Event",
    "Extensions",
    "ExtraCredentials",
    "Feature",
    "Frame",
    "FrameDecoder",
    "HostCredentials",
    "KeepAlive",
    "LocalProtocolError",
    "NoExtraCredentials",
    "PongReceived",
    "Proposal",
    "ProposalAccepted",
    "ProposalFrames",
    "ProposalReceived",
    "ProposalRefused",
    "Sentinel",
    "ServerConnection",
    "TransferDirection",
    "encode_frame",
    "encode_keepalive_frame",
]
