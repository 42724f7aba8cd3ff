"""The worker's side of a FileTransfer exchange: file info, accept or refuse, the hook, its result.

A transfer runs with blocking I/O in a worker thread that owns the connection (the transfer helper reads and writes
through a :class:`~rpcframework.server.pipe.StreamPipe`).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from rpcframework.errors import RPCFrameworkError
from rpcframework.protocol.transfer import ServerTransfer
from rpcframework.returnvalues import S_ERROR, DReturn
from rpcframework.server.pipe import StreamPipe, read_file_info
from rpcframework.server.service import classify_result
from rpcframework.transfer.helper import FileHelper

if TYPE_CHECKING:
    from rpcframework.server.connection import Call, Channel

__all__ = ["run_transfer"]

#: The per-call log line of every call, RPC or transfer, comes from one logger (docs/operations.md).
logger = logging.getLogger("rpcframework.server.connection")


def run_transfer(channel: Channel, call: Call) -> bool:
    """Run ``call`` (a FileTransfer action) on ``channel``; ``True`` when the exchange ended in step with the peer
    and the connection may serve another one."""
    started = time.perf_counter()
    limits = channel.limits
    # A peer that stalls holds this worker for at most transfer_idle_timeout per read (issue 12.3).
    pipe = StreamPipe(channel.stream, limits.transfer_idle_timeout, limits.write_timeout)
    machine = ServerTransfer(channel.conn.hand_over())
    result: DReturn = S_ERROR("transfer not run")
    helper: FileHelper | None = None
    try:
        info = read_file_info(machine, pipe)
        if call.method not in call.service.table.transfers:
            result = call.service.transfer(call.method, info, None, call.context)
            pipe.send(machine.refuse(result))  # type: ignore[arg-type]
            return False
        pipe.send(machine.accept())
        total = info.size if info.size is not None and info.size >= 0 else None
        helper = FileHelper(machine, pipe, total=total)
        result = call.service.transfer(call.method, info, helper, call.context)
        pipe.send(machine.send_result(result))
    except (RPCFrameworkError, OSError) as exc:
        logger.info("transfer %s with %s failed: %s", call.method, channel.where, exc)
        return False
    finally:
        _report(channel, call, result, helper, started)
    return machine.in_sync


def _report(channel: Channel, call: Call, result: DReturn, helper: FileHelper | None, started: float) -> None:
    channel.audit(call, result, time.perf_counter() - started, True)
    observer = call.service.observer
    if observer is not None:
        moved = helper.getTransferedBytes() if helper is not None else 0
        observer.transfer_finished(call.service.name, call.method, classify_result(result)[0], moved)
    if logger.isEnabledFor(logging.INFO):
        message = str(result.get("Message", ""))
        if not message.isprintable():  # escaped as connection.py does: peer text must not forge log lines
            message = message.encode("unicode_escape").decode("ascii")
        outcome = "OK" if result["OK"] else f"ERROR: {message}"
        elapsed = (time.perf_counter() - started) * 1000.0
        logger.info(
            "%s FileTransfer/%s by %s from %s: %s (%.2f ms)",
            call.service.name,
            call.method,
            call.caller,
            channel.where,
            outcome,
            elapsed,
        )
