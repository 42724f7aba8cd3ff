"""The vocabulary of a file transfer: constants, the data-phase mode, the events the machines report, and the
abort message. The state machines are in :mod:`rpcframework.protocol.transfer`, which re-exports all of this.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from rpcframework.errors import UnexpectedMessageError
from rpcframework.protocol.messages import Extensions, Feature, FileInfo, TransferDirection
from rpcframework.returnvalues import S_ERROR, S_OK, DErrorReturn, DReturn

__all__ = [
    "ACCEPTED",
    "CHECKSUM_ERROR",
    "CHUNK_SIZE",
    "DRAIN_LIMIT",
    "EXCEEDED_MAX_SIZE",
    "INCOMPLETE_TRANSFER",
    "NO_CHECKSUM_TOKEN",
    "RAW_CHUNK_MARK",
    "STREAM_CHECKSUMS",
    "ChunkAcknowledged",
    "ChunkReceived",
    "FileInfoReceived",
    "ResultReceived",
    "TransferAborted",
    "TransferAccepted",
    "TransferEvent",
    "TransferFinished",
    "TransferMode",
    "TransferRefused",
    "TransferStarted",
    "abort_message",
    "negotiated_mode",
    "parse_stream_end",
    "stream_checksum",
    "stream_end_message",
]

#: DIRAC's ``FileHelper.packetSize``: the largest chunk we send (1 MiB).
CHUNK_SIZE: Final = 1024 * 1024
#: First payload byte of a stream-mode raw chunk frame; no JSON or DEncode message can start with it.
RAW_CHUNK_MARK: Final = b"\x00"
#: The server's answer to an acceptable file-info message.
ACCEPTED: Final = "Accepted"
EXCEEDED_MAX_SIZE: Final = "Exceeded maximum file size"
CHECKSUM_ERROR: Final = "Error in the file CRC"
INCOMPLETE_TRANSFER: Final = "Incomplete transfer"
#: Anywhere in the token, DIRAC clients skip the checksum; an empty digest is then accepted by the receiver.
NO_CHECKSUM_TOKEN: Final = "NoCheckSum"
#: After our own stream-mode abort, at most this many bytes of chunks already in flight are discarded.
DRAIN_LIMIT: Final = 256 * 1024 * 1024

#: Hex digits of each stream-mode checksum.
_HEX_LEN: Final = {"crc32": 8, "sha256": 64}
#: The checksums a stream-mode transfer can use (``TransferClient(checksum=...)``), the default first.
STREAM_CHECKSUMS: Final = tuple(_HEX_LEN)


class TransferMode(enum.Enum):
    """How the data phase runs: DIRAC's stop-and-wait, or our negotiated stream."""

    DIRAC = "dirac"
    STREAM = "stream"


# --- events -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileInfoReceived:
    """Server: the client's file-info message; answer with ``accept()`` or ``refuse()``."""

    direction: TransferDirection
    info: FileInfo


@dataclass(frozen=True, slots=True)
class TransferAccepted:
    """Client: the server answered ``S_OK("Accepted")``; the data phase (or, for ListBulk, the result) follows."""


@dataclass(frozen=True, slots=True)
class TransferRefused:
    """Client: the server refused the file-info message; the exchange is over."""

    error: DErrorReturn


@dataclass(frozen=True, slots=True)
class TransferStarted:
    """Receiver (resume requested): the sender starts at ``offset``; feed the prefix to ``hash_prefix()`` now."""

    offset: int


@dataclass(frozen=True, slots=True)
class ChunkReceived:
    """Receiver: file data. ``data`` may be a memoryview over a frame; copy it if you keep it."""

    data: bytes | memoryview


@dataclass(frozen=True, slots=True)
class ChunkAcknowledged:
    """Sender, DIRAC mode: the receiver acked the last chunk; the next one may be sent."""


@dataclass(frozen=True, slots=True)
class TransferFinished:
    """The data phase ended normally. ``checksum_ok`` False: the digest (or size) did not match."""

    checksum_ok: bool
    size: int
    digest: str


@dataclass(frozen=True, slots=True)
class TransferAborted:
    """The data phase was aborted, by the peer (``by_peer``) or by us; both sides are back in step."""

    reason: str
    by_peer: bool


@dataclass(frozen=True, slots=True)
class ResultReceived:
    """Client: the server's final result (the handler's ``S_OK``/``S_ERROR``); the exchange is over."""

    result: DReturn


TransferEvent: TypeAlias = (
    FileInfoReceived
    | TransferAccepted
    | TransferRefused
    | TransferStarted
    | ChunkReceived
    | ChunkAcknowledged
    | TransferFinished
    | TransferAborted
    | ResultReceived
)


def abort_message(reason: str) -> DErrorReturn:
    """The abort envelope: ``S_ERROR(reason)`` plus ``"AbortTransfer": True`` (DIRAC's marker)."""
    message: dict[str, Any] = dict(S_ERROR(reason))
    message["AbortTransfer"] = True
    return message  # type: ignore[return-value]


def negotiated_mode(extensions: Extensions | None) -> TransferMode:
    """The data-phase mode a connection with these extensions uses."""
    if extensions is not None and Feature.STREAM in extensions.features:
        return TransferMode.STREAM
    return TransferMode.DIRAC


def stream_checksum(extensions: Extensions | None) -> str:
    """The checksum a stream-mode transfer uses: ``"crc32"`` when negotiated, else ``"sha256"``."""
    if extensions is not None and Feature.CRC32 in extensions.features:
        return "crc32"
    return "sha256"


def stream_end_message(digest: str, size: int, checksum: str = "sha256") -> DReturn:
    """Stream mode: the sender's end message, the hex checksum (``checksum`` names it) and size of the whole file."""
    return S_OK([False, {checksum: digest, "size": size}])


def parse_stream_end(value: object, checksum: str = "sha256") -> tuple[str, int]:
    """The ``(digest, size)`` of a stream-mode end message's value; :class:`UnexpectedMessageError` if malformed
    or if it names another checksum than the one negotiated."""
    if isinstance(value, list | tuple) and len(value) == 2 and value[0] is False and isinstance(value[1], dict):
        digest, size = value[1].get(checksum), value[1].get("size")
        if isinstance(digest, str) and len(digest) == _HEX_LEN[checksum] and type(size) is int and size >= 0:
            return digest, size
    raise UnexpectedMessageError("invalid end of stream message")
