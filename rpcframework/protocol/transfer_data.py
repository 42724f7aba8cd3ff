"""The data phase of a file transfer in DIRAC's stop-and-wait mode: ``S_OK([True, <bytes>])`` per chunk,
``S_OK([False, md5hex])`` at the end, or a message carrying ``"AbortTransfer": True`` (the proposal, the file
information and the results live in :mod:`rpcframework.protocol.messages`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from rpcframework.errors import ProtocolError
from rpcframework.protocol.messages import _is_sequence, check_envelope
from rpcframework.returnvalues import S_OK, DOKReturn

__all__ = [
    "TransferAbort",
    "TransferChunk",
    "TransferEnd",
    "parse_transfer_message",
    "transfer_chunk_message",
    "transfer_end_message",
]

_MD5_HEX_LEN: Final = 32


@dataclass(frozen=True, slots=True)
class TransferChunk:
    """A data chunk: ``S_OK([True, <bytes>])``."""

    data: bytes


@dataclass(frozen=True, slots=True)
class TransferEnd:
    """The end of the data: ``S_OK([False, md5hex])``."""

    md5: str


@dataclass(frozen=True, slots=True)
class TransferAbort:
    """The sender gave up: a message carrying ``"AbortTransfer": True``."""

    message: str


def transfer_chunk_message(data: bytes) -> DOKReturn:
    return S_OK([True, data])


def transfer_end_message(md5_hex: str) -> DOKReturn:
    return S_OK([False, md5_hex])


def parse_transfer_message(message: object) -> TransferChunk | TransferEnd | TransferAbort:
    """Parse one data-phase message from the sender."""
    envelope = check_envelope(message)
    if envelope.get("AbortTransfer") is True:
        return TransferAbort(str(envelope.get("Message", "transfer aborted by the peer")))
    if not envelope["OK"]:
        raise ProtocolError("Invalid file transfer message")
    value = envelope["Value"]
    if _is_sequence(value) and len(value) == 2:
        more, body = value
        if more is True:
            if isinstance(body, bytes):
                return TransferChunk(body)
            if isinstance(body, str):
                # DEncode has one string type: DIRAC's DEncode peers send chunks as str (surrogateescape).
                return TransferChunk(body.encode("utf-8", "surrogateescape"))
        elif more is False and isinstance(body, str) and len(body) <= _MD5_HEX_LEN:
            return TransferEnd(body)
    raise ProtocolError("Invalid file transfer message")
