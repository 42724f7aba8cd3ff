"""File transfer as two sans-IO state machines: :class:`ClientTransfer` and :class:`ServerTransfer`.

They take over a connection in ``HANDED_OVER`` (:meth:`BaseConnection.hand_over`) and run the rest of a
``FileTransfer`` exchange: the file-info message, the server's ``"Accepted"``, the data phase, the result::

    client                                        server
    start()              -- S_OK(file info)   -->  FileInfoReceived(direction, info)
    TransferAccepted     <-- S_OK("Accepted") --   accept()          | refuse(error) -> TransferRefused
    ... data phase: the sender (client for *FromClient, server for *ToClient; none for ListBulk) ...
    ResultReceived       <-- result           --   send_result(result)

Data phase, two modes (``docs/protocol.md``, "File transfer"):

* **DIRAC** (stop-and-wait, what every DIRAC peer speaks): ``S_OK([True, <bytes>])`` per chunk, each answered
  ``S_OK()`` by the receiver; ``S_OK([False, md5hex])`` at the end (no answer). Either side may abort with an
  ``S_ERROR`` carrying ``"AbortTransfer": True``; the receiver's abort takes the place of an ack.
* **stream** (our ``stream`` extension): chunks are raw frames ``<len>:\\x00<bytes>`` (no ack, no base64), the end is
  ``S_OK([False, {"sha256": hex, "size": n}])``, and the receiver sends exactly one answer: ``S_OK()`` or
  ``S_ERROR(reason)`` after the sender's end or abort, or its own abort earlier.

Theory of operation (as :mod:`rpcframework.protocol.rpc`): ``receive_data(bytes)`` (``b""`` = EOF), then
``next_event()`` until ``NEED_DATA`` or ``PAUSED``; our actions return the bytes to send; bytes owed in reaction to
the peer (acks, answers, automatic aborts, keepalive pongs) come from ``data_to_send()``, which must be drained
after every ``next_event()`` call. A DIRAC-mode ack is owed from :class:`ChunkReceived` until the next
``next_event()`` call, so calling :meth:`abort` in between answers that chunk with the abort, as DIRAC does.

This module holds the two roles; the data phase they share is :class:`TransferEndpoint`
(:mod:`rpcframework.protocol.transfer_endpoint`), and the events and constants are in
:mod:`rpcframework.protocol.transfer_events`. All of it is re-exported here.
"""

from __future__ import annotations

import logging

from rpcframework.errors import UnexpectedMessageError
from rpcframework.protocol.events import LocalProtocolError
from rpcframework.protocol.messages import FileInfo, TransferDirection, sanitize_result
from rpcframework.protocol.transfer_endpoint import Phase, TransferEndpoint
from rpcframework.protocol.transfer_events import (
    ACCEPTED,
    CHECKSUM_ERROR,
    CHUNK_SIZE,
    EXCEEDED_MAX_SIZE,
    INCOMPLETE_TRANSFER,
    NO_CHECKSUM_TOKEN,
    RAW_CHUNK_MARK,
    ChunkAcknowledged,
    ChunkReceived,
    FileInfoReceived,
    ResultReceived,
    TransferAborted,
    TransferAccepted,
    TransferEvent,
    TransferFinished,
    TransferMode,
    TransferRefused,
    TransferStarted,
    abort_message,
    negotiated_mode,
)
from rpcframework.returnvalues import S_ERROR, S_OK, DErrorReturn, DReturn

__all__ = [
    "ACCEPTED",
    "CHECKSUM_ERROR",
    "CHUNK_SIZE",
    "EXCEEDED_MAX_SIZE",
    "INCOMPLETE_TRANSFER",
    "NO_CHECKSUM_TOKEN",
    "RAW_CHUNK_MARK",
    "ChunkAcknowledged",
    "ChunkReceived",
    "ClientTransfer",
    "FileInfoReceived",
    "ResultReceived",
    "ServerTransfer",
    "TransferAborted",
    "TransferAccepted",
    "TransferEndpoint",
    "TransferEvent",
    "TransferFinished",
    "TransferMode",
    "TransferRefused",
    "TransferStarted",
    "abort_message",
    "negotiated_mode",
]

logger = logging.getLogger(__name__)


# --- the two network roles ----------------------------------------------------------------------------------------


class ClientTransfer(TransferEndpoint):
    """The client side: sends the file info, then sends or receives the data, then reads the result."""

    _is_client = True

    def start(self, info: FileInfo) -> bytes:
        """Send the file-info message; ``info.offset`` is sent only when ``resume`` was negotiated."""
        if self._phase is not Phase.INFO:
            raise LocalProtocolError("start() was already called")
        if info.offset and not (self._resume_allowed and self.direction is TransferDirection.ToClient):
            raise LocalProtocolError("a resume offset needs the resume extension and a ToClient transfer")
        self.info = info
        self._phase = Phase.ACCEPTING
        return self._frame(S_OK(info.to_wire(self.direction)))

    def _on_control(self, phase: Phase, envelope: DReturn) -> TransferEvent | None:
        if phase is Phase.ACCEPTING:
            if not envelope["OK"]:
                self._phase = Phase.DONE
                return TransferRefused(sanitize_result(envelope))  # type: ignore[arg-type]
            if envelope["Value"] != ACCEPTED:
                raise UnexpectedMessageError("unexpected answer to the file information")
            self._start_data()
            return TransferAccepted()
        if phase is Phase.RESULT:
            if envelope.get("AbortTransfer") is True:
                return None  # a receiver abort that crossed our own abort: superseded, skip it
            self._phase = Phase.DONE
            return ResultReceived(sanitize_result(envelope))
        raise UnexpectedMessageError(f"the server sent a message in transfer phase {phase.value}")


class ServerTransfer(TransferEndpoint):
    """The server side: reads the file info, accepts or refuses, moves the data, sends the handler's result."""

    _is_client = False

    @property
    def requested_offset(self) -> int:
        """The resume offset the client asked for (0: none, or resume not negotiated)."""
        return self.info.offset if self.info is not None else 0

    def accept(self) -> bytes:
        """Answer ``S_OK("Accepted")`` and enter the data phase."""
        if self._phase is not Phase.ACCEPTING:
            raise LocalProtocolError("no file information to accept")
        self._start_data()
        return self._frame(S_OK(ACCEPTED))

    def refuse(self, error: DErrorReturn) -> bytes:
        """Refuse the transfer (DIRAC: ``"Service can't transfer files <direction>"``); the exchange is over."""
        if self._phase is not Phase.ACCEPTING:
            raise LocalProtocolError("no file information to refuse")
        self._phase = Phase.DONE
        return self._frame(sanitize_result(error))

    def send_result(self, result: DReturn) -> bytes:
        """Send the handler's result. A success before the data phase ended becomes ``"Incomplete transfer"``
        (DIRAC's rule) and leaves the connection out of step (:attr:`in_sync` False: close it)."""
        if self._phase not in (Phase.DATA, Phase.RESULT):
            raise LocalProtocolError("no transfer to send a result for")
        if self._phase is Phase.DATA:
            self._in_sync = False
            if result["OK"]:
                logger.warning("transfer handler returned before the data phase ended")
                result = S_ERROR(INCOMPLETE_TRANSFER)
        self._phase = Phase.DONE
        return self._frame(sanitize_result(result))

    def _on_control(self, phase: Phase, envelope: DReturn) -> TransferEvent | None:
        if phase is Phase.INFO:
            self.info = FileInfo.from_wire(envelope, self.direction, resume_allowed=self._resume_allowed)
            if self.info.offset and self.direction is not TransferDirection.ToClient:
                raise UnexpectedMessageError("a resume offset is only valid for ToClient")
            self._phase = Phase.ACCEPTING
            return FileInfoReceived(self.direction, self.info)
        raise UnexpectedMessageError(f"the client sent a message in transfer phase {phase.value}")
