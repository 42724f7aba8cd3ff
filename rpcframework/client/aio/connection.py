"""One DISET RPC exchange on one asyncio connection, driven through the sans-IO ``ClientConnection``.

The asyncio twin of :mod:`rpcframework.client.inner`, step for step: the same protocol machine, the same
``Attempt`` phases (``ARGUMENTS_SENT`` is set *before* the first byte of the arguments is queued, so a failure from
then on is never retried), the same pipelined steady state with our servers (proposal and arguments in one write,
ack and result in one read) and DIRAC's two round trips otherwise, the same refusal of keyword arguments a DIRAC
server cannot take (nothing sent). Every wait gets the time left of the call's deadline.

A task cancelled in the middle of an exchange leaves the connection in an unknown state; the caller closes it
(never returns it to the pool), so a half-read reply can never be taken for another call's answer.

The steady state (a pooled connection to our server, pipelining negotiated) has a shorter path: :func:`send_call`
writes proposal and arguments at once and returns the future that the stream's event mode completes with the
parsed answer (:meth:`AsyncConnection.consume` runs the machine inside ``data_received``), and
:func:`finish_call` turns that answer into the result. One future and one task wake-up per call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

from rpcframework.client.inner import (
    PIPELINE_IDLE_FRACTION,
    POOL_IDLE_FRACTION,
    Attempt,
    KeywordArgumentsUnsupported,
)
from rpcframework.client.policy import CallPhase
from rpcframework.client.replies import call_outcome, refusal_error, result_or_overload
from rpcframework.deadline import Deadline
from rpcframework.errors import ConnectionClosedError, ProtocolError
from rpcframework.protocol import (
    NEED_DATA,
    CallResult,
    ClientConnection,
    ConnectionClosed,
    ConnectionState,
    Extensions,
    Feature,
    PongReceived,
    Proposal,
    ProposalAccepted,
    ProposalFrames,
    ProposalRefused,
)
from rpcframework.protocol.messages import TraceContext
from rpcframework.returnvalues import DReturn
from rpcframework.transports.aio import AsyncStream, ExpiryWatch

__all__ = [
    "AsyncConnection",
    "Attempt",
    "KeywordArgumentsUnsupported",
    "execute",
    "finish_call",
    "goodbye_first",
    "send_call",
]

# A last-resort loop guard (the deadline bounds the time, the message-size cap the bytes), as in the sync client.
_MAX_READS_PER_EVENT: Final = 1_000_000
#: Events looked at while checking an idle pooled connection (pongs, pings); more is abuse.
_MAX_IDLE_EVENTS: Final = 16
#: Pongs one read may carry ahead of an answer in event mode (one per ping we sent); more is abuse.
_MAX_PONGS_PER_READ: Final = 64
_IDLE: Final = ConnectionState.IDLE
_CLOSED: Final = ConnectionState.CLOSED


class AsyncConnection:
    """A connected :class:`AsyncStream` and its protocol machine; used by one task at a time (the pool hands it
    out)."""

    __slots__ = (
        "_ping_ids",
        "calls",
        "created",
        "last_ping",
        "last_used",
        "machine",
        "max_idle",
        "pipeline_idle",
        "stream",
        "url",
    )

    def __init__(
        self, url: str, stream: AsyncStream, offer: Extensions | None, frames: ProposalFrames | None = None
    ) -> None:
        self.url = url
        self.stream = stream
        self.machine = ClientConnection(offer=offer, frames=frames)
        self.created = self.last_used = time.monotonic()
        self.last_ping = 0.0
        self.calls = 0
        self.max_idle = math.inf
        self.pipeline_idle = 0.0
        self._ping_ids = itertools.count(1)
        stream.consumer = self.consume

    def __repr__(self) -> str:
        return f"<AsyncConnection {self.url} state={self.machine.state.value} calls={self.calls}>"

    @property
    def reusable(self) -> bool:
        """True when reuse was negotiated and the last exchange ended cleanly (the machine is IDLE)."""
        return self.machine.state is ConnectionState.IDLE and self.machine.reusable and not self.stream.closed

    def send_keepalive(self) -> None:
        """Queue a ``dka`` ping; its pong is read (and skipped) at the next exchange or idle check."""
        self.stream.write(self.machine.send_keepalive(f"rpcframework-{next(self._ping_ids)}"))
        self.last_ping = time.monotonic()

    def check_idle(self) -> bool:
        """Look at what arrived while the connection sat idle (already buffered by the loop, so no wait): ``True``
        when it may carry the next call, ``False`` when the server closed it. Anything but keepalives raises
        :class:`ProtocolError`: an answer nobody asked for must never be read as the next call's answer."""
        stream = self.stream
        machine = self.machine
        if machine.needs_data() and stream.pending() == 0 and not stream.at_eof and not stream.closed:
            return True  # the steady state: nothing arrived, nothing left over in the machine from the last reply
        if stream.pending():
            machine.receive_data(stream.read_nowait())
        elif stream.at_eof or stream.closed:
            return False
        for _ in range(_MAX_IDLE_EVENTS):
            event = machine.next_event()  # raises ProtocolError for a frame nobody asked for
            if isinstance(event, PongReceived):
                continue
            if isinstance(event, ConnectionClosed):
                return False
            if event is NEED_DATA:
                return not stream.at_eof
            raise ProtocolError(f"{self.url}: unexpected {type(event).__name__} on an idle connection")
        raise ProtocolError(f"{self.url}: the server kept sending on an idle connection")

    def ready(self, now: float) -> bool:
        """True when a pipelined call may go out at once: our server, well within its idle limit, nothing received
        since the last exchange and nothing owed (checked without reading: the loop buffered whatever came)."""
        machine = self.machine
        return (
            now - self.last_used < self.pipeline_idle
            and machine.state is _IDLE
            and self.stream.quiet
            and machine.needs_data()
        )

    def consume(self, data: bytes) -> object:
        """The stream's event-mode consumer: feed ``data`` (``b""``: the end) to the machine and return the first
        event that answers the call (pongs to our keepalives skipped, pongs owed to the server's pings sent), or
        ``None`` while it is incomplete. Raises the machine's ``ProtocolError`` for a bad peer."""
        machine = self.machine
        machine.receive_data(data)
        for _ in range(_MAX_PONGS_PER_READ):
            event = machine.next_event()
            if event is NEED_DATA:
                owed = machine.data_to_send()
                if owed:
                    self.stream.write(owed)
                return None
            if event.__class__ is not PongReceived:
                return event
        raise ProtocolError(f"{self.url}: the server sent more than {_MAX_PONGS_PER_READ} pongs at once")

    def close(self) -> None:
        self.stream.close()


def send_call(
    conn: AsyncConnection,
    proposal: Proposal,
    call: tuple[Sequence[Any], Mapping[str, Any]],
    timeout: float | None,
    watch: ExpiryWatch | None,
) -> asyncio.Future[object]:
    """Write one pipelined call (``(args, kwargs)``) on a :meth:`~AsyncConnection.ready` connection and return the
    future of its answer (for :func:`finish_call`); ``watch`` keeps its deadline. Raises before anything is sent for
    keyword arguments a DIRAC server cannot take or arguments that do not encode; from the write on, the call counts
    as sent."""
    args, kwargs = call
    machine = conn.machine
    if kwargs:
        negotiated = machine.extensions
        if negotiated is None or Feature.KWARGS not in negotiated:
            raise _no_kwargs(conn, proposal)
    data = machine.send_call(proposal, args, kwargs or None)
    stream = conn.stream
    waiter = stream.expect_event(timeout, watch)
    stream.write(data)
    return waiter


def finish_call(conn: AsyncConnection, event: object) -> DReturn:
    """The result of a call sent by :func:`send_call` from its answer (an overload refusal raises, as any refusal)."""
    if isinstance(event, ConnectionClosed):
        raise ConnectionClosedError(f"{conn.url} closed the connection while waiting for the result")
    return call_outcome(conn, event)


def goodbye_first(conn: AsyncConnection) -> bool:
    """After a ``ConnectionClosedError``: whether the server's goodbye came before our call (it read nothing)."""
    return conn.machine.state is _CLOSED


def _no_kwargs(conn: AsyncConnection, proposal: Proposal) -> KeywordArgumentsUnsupported:
    return KeywordArgumentsUnsupported(
        f"{conn.url} does not support keyword arguments (a DIRAC service takes positional arguments "
        f"only); call {proposal.action_name} with positional arguments. Nothing was sent."
    )


async def execute(
    conn: AsyncConnection,
    proposal: Proposal,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    *,
    deadline: Deadline,
    attempt: Attempt,
    trace: TraceContext | None = None,
) -> DReturn:
    """Run one exchange and return the result envelope (see :meth:`InnerRPCClient.execute` for what it raises).
    After it returns, ``conn.reusable`` says whether the connection may go back to the pool."""
    machine = conn.machine
    if machine.pipeline and time.monotonic() - conn.last_used < conn.pipeline_idle:
        return await _execute_pipelined(conn, proposal, args, kwargs, deadline=deadline, attempt=attempt, trace=trace)
    if trace is not None:
        proposal = dataclasses.replace(proposal, trace_context=trace)
    stream = conn.stream
    attempt.phase = CallPhase.PROPOSING
    deadline.time_left("sending the proposal")
    stream.write(machine.data_to_send() + machine.send_proposal(proposal))
    event = await _next_event(conn, deadline, "waiting for the proposal's answer")
    if isinstance(event, ProposalRefused):
        raise refusal_error(event.error)
    if not isinstance(event, ProposalAccepted):
        raise ProtocolError(f"{conn.url}: unexpected answer to the proposal: {type(event).__name__}")
    if kwargs and (event.extensions is None or Feature.KWARGS not in event.extensions):
        raise _no_kwargs(conn, proposal)
    if event.extensions is not None and event.extensions.idle_timeout and machine.pipeline:
        # Pipeline only well within the server's announced idle timeout; drop idle connections before it does.
        conn.pipeline_idle = event.extensions.idle_timeout * PIPELINE_IDLE_FRACTION
        conn.max_idle = event.extensions.idle_timeout * POOL_IDLE_FRACTION
    data = machine.send_arguments(args, kwargs or None)
    # From here on the handler may run: a failure must not be retried (a partly sent frame counts as sent).
    attempt.phase = CallPhase.ARGUMENTS_SENT
    stream.write(data)
    event = await _next_event(conn, deadline, "waiting for the result")
    if not isinstance(event, CallResult):
        raise ProtocolError(f"{conn.url}: expected the call's result, got {type(event).__name__}")
    conn.calls += 1
    conn.last_used = time.monotonic()
    return result_or_overload(event.result)


async def _execute_pipelined(
    conn: AsyncConnection,
    proposal: Proposal,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    *,
    deadline: Deadline,
    attempt: Attempt,
    trace: TraceContext | None,
) -> DReturn:
    """One round trip: proposal + arguments in one write; ack + result (or the refusal) in one answer."""
    machine = conn.machine
    if kwargs:
        negotiated = machine.extensions
        if negotiated is None or Feature.KWARGS not in negotiated:
            raise _no_kwargs(conn, proposal)
    attempt.phase = CallPhase.PROPOSING
    stream = conn.stream
    deadline.time_left("sending the call")  # raises when the deadline has passed already
    owed = machine.data_to_send()  # pongs owed to the server's pings, if any
    data = machine.send_call(proposal, args, kwargs or None, trace)
    # The arguments go with the proposal: from the first byte on the handler may run (at-most-once).
    attempt.phase = CallPhase.ARGUMENTS_SENT
    stream.write(owed + data if owed else data)
    try:
        event = await _next_event(conn, deadline, "waiting for the result")
    except ConnectionClosedError:
        if machine.state is ConnectionState.CLOSED:
            # The server's goodbye came first: it closed the idle connection without reading our call.
            attempt.phase = CallPhase.PROPOSING
        raise
    return call_outcome(conn, event)


async def _next_event(conn: AsyncConnection, deadline: Deadline, what: str) -> object:
    machine = conn.machine
    stream = conn.stream
    for _ in range(_MAX_READS_PER_EVENT):
        if not machine.needs_data():
            event = machine.next_event()
            if event is not NEED_DATA:
                if isinstance(event, PongReceived):
                    continue  # the answer to a keepalive we sent while the connection was idle
                if isinstance(event, ConnectionClosed):
                    raise ConnectionClosedError(f"{conn.url} closed the connection while {what}")
                return event
            owed = machine.data_to_send()  # pongs to the server's pings
            if owed:
                stream.write(owed)
        machine.receive_data(await stream.recv(deadline.time_left(what), what))
    raise ProtocolError(f"{conn.url}: no complete message after {_MAX_READS_PER_EVENT} reads while {what}")
