"""``InnerRPCClient``: one attempt of a call at one URL of a service; the DISET exchange on one connection.

DISET layers its client as ``RPCClient`` -> ``InnerRPCClient`` -> ``BaseClient``; so do we, by holding instead of
inheriting (see :mod:`rpcframework.client.base` for why). An :class:`InnerRPCClient` holds the service's
:class:`~rpcframework.client.base.BaseClient` (where, as whom, which proposal) and its
:class:`~rpcframework.client.pool.ConnectionPool`, and :meth:`InnerRPCClient.call_url` makes one attempt at one URL:
a pooled connection (or a new one: connect and handshake within the deadline), the exchange, the connection back to
the pool. Which URL, and whether to try again, is the ``RPCClient``'s decision.

A :class:`Connection` is a stream plus its protocol machine. :meth:`InnerRPCClient.execute` runs the exchange::

    proposal  -> ack (accepted, with the negotiated extensions | refused -> RemoteError)
    arguments -> result

Every blocking operation gets the time left of the call's deadline as its socket timeout, so the whole call
(connect, handshake, exchange) never outlasts ``Timeout.total``. :class:`Attempt` records how far the exchange got:
the caller may retry only while ``phase.arguments_sent`` is false (at-most-once execution).

Keyword arguments need the ``kwargs`` extension. Against a DIRAC service (ack value ``None``) they are refused
*after* the ack and *before* anything else is sent: the DIRAC service then sees the connection close and runs
nothing.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import select
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from rpcframework.client.base import BaseClient, Endpoint
from rpcframework.client.failures import check_dead_pooled_connection, handshake_timeout_error
from rpcframework.client.policy import CallPhase
from rpcframework.client.replies import call_outcome, refusal_error, result_or_overload
from rpcframework.deadline import Deadline
from rpcframework.errors import (
    ConnectionClosedError,
    DeadlineExceeded,
    ProtocolError,
    RemoteError,
)
from rpcframework.protocol import (
    NEED_DATA,
    CallResult,
    ClientConnection,
    ConnectionClosed,
    ConnectionState,
    Extensions,
    Feature,
    LocalProtocolError,
    PongReceived,
    Proposal,
    ProposalAccepted,
    ProposalFrames,
    ProposalRefused,
)
from rpcframework.protocol.messages import TraceContext
from rpcframework.returnvalues import DReturn
from rpcframework.transports import Stream
from rpcframework.transports.base import UnknownCAError
from rpcframework.transports.plain import ConnectTimeout

if TYPE_CHECKING:
    from rpcframework.client.pool import ConnectionPool  # pool.py imports Connection from here

__all__ = ["Attempt", "Connection", "InnerRPCClient", "KeywordArgumentsUnsupported"]

logger = logging.getLogger(__name__)

_RECV_SIZE: Final = 256 * 1024
# A last-resort loop guard, not the limit that matters: the call's deadline bounds the time, the message-size cap
# the bytes. It is high because a slow peer may deliver a large message in many small TLS records.
_MAX_READS_PER_EVENT: Final = 1_000_000
#: Reads made while checking an idle pooled connection (pongs, pings, a TLS record without data); more is abuse.
_MAX_IDLE_READS: Final = 16
#: How long a read of bytes already announced by the socket may wait (M2Crypto cannot read with no wait at all).
_IDLE_READ_WAIT: Final = 0.001
# A pooled connection found dead is replaced by another pooled one or a fresh one; a few tries at most.
_MAX_STALE_RETRIES: Final = 3


class KeywordArgumentsUnsupported(LocalProtocolError):
    """The server did not negotiate keyword arguments (a DIRAC service); nothing was sent. Not retried."""


class Attempt:
    """How far one attempt got, for the retry decision (mutable, owned by one thread)."""

    __slots__ = ("phase", "reused")

    def __init__(self, reused: bool = False) -> None:
        self.phase = CallPhase.CONNECTING
        self.reused = reused


class Connection:
    """A connected stream and its protocol machine; used by one thread at a time (the pool hands it out)."""

    __slots__ = (
        "_ping_ids",
        "_poller",
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
        self, url: str, stream: Stream, offer: Extensions | None, frames: ProposalFrames | None = None
    ) -> None:
        self.url = url
        self.stream = stream
        self.machine = ClientConnection(offer=offer, frames=frames)
        self.created = self.last_used = time.monotonic()
        self.last_ping = 0.0  # pings do not count as use: a connection nobody calls through still ages out
        self.calls = 0
        #: Idle seconds after which the pool must not hand this connection out (the server's announced limit).
        self.max_idle = math.inf
        #: Idle seconds up to which a call may be pipelined (0 until ``pipeline`` is negotiated).
        self.pipeline_idle = 0.0
        self._ping_ids = itertools.count(1)
        self._poller: select.poll | None = None

    def __repr__(self) -> str:
        return f"<Connection {self.url} state={self.machine.state.value} calls={self.calls}>"

    @property
    def reusable(self) -> bool:
        """True when reuse was negotiated and the last exchange ended cleanly (the machine is IDLE)."""
        return self.machine.state is ConnectionState.IDLE and self.machine.reusable

    def send_keepalive(self, timeout: float) -> None:
        """Send a ``dka`` ping without waiting for the pong (it is read, and skipped, at the next exchange)."""
        data = self.machine.send_keepalive(f"rpcframework-{next(self._ping_ids)}")
        self.stream.settimeout(timeout)
        self.stream.send_all(data)
        self.last_ping = time.monotonic()

    def check_idle(self) -> bool:
        """Read, without waiting, what arrived while this connection sat idle in the pool: ``True`` when it may
        carry the next call, ``False`` when the server closed it (EOF, or its goodbye).

        Keepalive pongs (and pings, whose pongs go out with the next call) are all a server may send between
        exchanges. Anything else raises :class:`ProtocolError`: a reply nobody asked for would otherwise be read as
        the answer to the next call, so the caller must drop the connection.
        """
        machine = self.machine
        if machine.needs_data() and self.stream.pending() <= 0 and not self._socket_readable():
            return True  # the steady state: nothing arrived
        for _ in range(_MAX_IDLE_READS):
            event = machine.next_event()  # raises ProtocolError for an unsolicited frame
            if isinstance(event, PongReceived):
                continue
            if isinstance(event, ConnectionClosed):
                return False
            if event is not NEED_DATA:
                raise ProtocolError(f"{self.url}: unexpected {type(event).__name__} on an idle connection")
            if self.stream.pending() <= 0 and not self._socket_readable():
                return True
            self.stream.settimeout(_IDLE_READ_WAIT)
            try:
                data = self.stream.recv(_RECV_SIZE)
            except DeadlineExceeded:
                return True  # a TLS record without application data (a session ticket): nothing for us
            machine.receive_data(data)
        raise ProtocolError(f"{self.url}: the server kept sending on an idle connection")

    def _socket_readable(self) -> bool:
        poller = self._poller
        if poller is None:
            fd = self.stream.fileno()
            if fd < 0:
                return True  # closed under us: let the read report it
            poller = self._poller = select.poll()
            poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))

    def close(self) -> None:
        self.stream.close()


#: A connection is pipelined only while idle for less than this fraction of the server's announced idle timeout,
#: so the server cannot be closing it for idleness while our call is in flight (see docs/protocol.md).
PIPELINE_IDLE_FRACTION: Final = 0.5
#: The pool drops connections idle for this fraction of the server's idle timeout (before the server does).
POOL_IDLE_FRACTION: Final = 0.9


def _learn_idle_timeout(conn: Connection, idle_timeout: float) -> None:
    conn.pipeline_idle = idle_timeout * PIPELINE_IDLE_FRACTION
    conn.max_idle = idle_timeout * POOL_IDLE_FRACTION


def _no_kwargs(conn: Connection, proposal: Proposal) -> KeywordArgumentsUnsupported:
    return KeywordArgumentsUnsupported(
        f"{conn.url} does not support keyword arguments (a DIRAC service takes positional arguments "
        f"only); call {proposal.action_name} with positional arguments. Nothing was sent."
    )


class InnerRPCClient:
    """One attempt of a call at one URL of a service, over the service's connection pool.

    Holds the service's :attr:`base` (:class:`~rpcframework.client.base.BaseClient`) and :attr:`pool`; keeps no
    per-call state, so one instance serves every thread of an ``RPCClient``.
    """

    __slots__ = ("base", "pool")

    def __init__(self, base: BaseClient, pool: ConnectionPool) -> None:
        self.base = base
        self.pool = pool

    def __repr__(self) -> str:
        return f"<InnerRPCClient {self.base.service!r}>"

    def call_url(
        self,
        endpoint: Endpoint,
        method: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        *,
        deadline: Deadline,
        attempt: Attempt,
        trace: TraceContext | None = None,
    ) -> DReturn:
        """One attempt at ``endpoint``: a pooled connection or a new one, the exchange, the connection back to the
        pool when it may carry another call. A pooled connection found dead before the ack (the server restarted;
        nothing ran) is replaced, with the other idle connections to that URL dropped. Raises what
        :meth:`execute` raises; ``attempt`` says how far it got."""
        proposal = self.base.proposal(endpoint.path, method)
        pool = self.pool
        for _ in range(_MAX_STALE_RETRIES):
            conn = pool.acquire(endpoint.url)
            attempt.reused = conn is not None
            attempt.phase = CallPhase.CONNECTING
            if conn is None:
                conn = self.connect(endpoint, deadline)
            try:
                result = self.execute(conn, proposal, args, kwargs, deadline=deadline, attempt=attempt, trace=trace)
            except RemoteError:
                pool.release(conn)  # a refusal leaves a reused connection idle and usable
                raise
            except ConnectionClosedError as exc:
                conn.close()
                check_dead_pooled_connection(exc, endpoint.url, attempt, pool.discard_idle, logger)
                continue  # a dead pooled connection, found before the ack: nothing ran, take another
            except BaseException:
                conn.close()
                raise
            pool.release(conn)
            return result
        raise ConnectionClosedError(f"{endpoint.url}: pooled connections kept failing; giving up")

    def connect(self, endpoint: Endpoint, deadline: Deadline) -> Connection:
        """A new connection to ``endpoint`` (TCP connect, then the TLS handshake for ``dips://``), each step capped
        by its ``Timeout`` limit and the time left of ``deadline``."""
        base = self.base
        timeout = base.timeout
        if deadline.expired:
            raise DeadlineExceeded(f"connecting to {endpoint.url}: the call's deadline passed")
        unresolved = base.addresses.take_failure(endpoint.url)
        if unresolved is not None:
            raise unresolved
        # Backend.connect takes two step limits, not one deadline: each is capped by the time left of the call.
        handshake_limit = timeout.handshake_deadline(deadline).remaining()
        try:
            stream = endpoint.backend.connect(
                endpoint.host,
                endpoint.port,
                tls=endpoint.tls,
                server_hostname=endpoint.server_name,
                connect_timeout=timeout.connect_deadline(deadline).remaining(),
                handshake_timeout=handshake_limit,
                keepalive=timeout.keepalive,
            )
        except ConnectTimeout:
            raise
        except DeadlineExceeded as exc:
            if endpoint.tls is None:
                raise
            raise handshake_timeout_error(endpoint, handshake_limit) from exc
        except UnknownCAError as exc:
            raise UnknownCAError(f"{exc}; {base.ca_hint}", errno=exc.errno) from exc
        return Connection(endpoint.url, stream, base.offer, base.proposal_frames)

    def execute(
        self,
        conn: Connection,
        proposal: Proposal,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        *,
        deadline: Deadline,
        attempt: Attempt,
        trace: TraceContext | None = None,
    ) -> DReturn:
        """Run one exchange and return the result envelope (``trace``: the call's trace context, if it has one).

        Raises :class:`RemoteError` when the proposal is refused, :class:`ServiceOverloaded` when the server
        refused the call before running it (safe to retry), :class:`KeywordArgumentsUnsupported`, and
        transport or protocol errors. After it returns, ``conn.reusable`` says whether it may go back to the pool.
        """
        machine = conn.machine
        stream = conn.stream
        if machine.pipeline and time.monotonic() - conn.last_used < conn.pipeline_idle:
            return self._execute_pipelined(
                conn, proposal, args, kwargs, deadline=deadline, attempt=attempt, trace=trace
            )
        if trace is not None:
            proposal = dataclasses.replace(proposal, trace_context=trace)
        attempt.phase = CallPhase.PROPOSING
        data = machine.data_to_send() + machine.send_proposal(proposal)
        stream.settimeout(deadline.time_left("sending the proposal"))
        stream.send_all(data)
        event = self._next_event(conn, deadline, "waiting for the proposal's answer")
        if isinstance(event, ProposalRefused):
            raise refusal_error(event.error)
        if not isinstance(event, ProposalAccepted):
            raise ProtocolError(f"{conn.url}: unexpected answer to the proposal: {type(event).__name__}")
        if kwargs and (event.extensions is None or Feature.KWARGS not in event.extensions):
            raise _no_kwargs(conn, proposal)
        if event.extensions is not None and event.extensions.idle_timeout and machine.pipeline:
            _learn_idle_timeout(conn, event.extensions.idle_timeout)
        data = machine.send_arguments(args, kwargs or None)
        # From here on the handler may run: a failure must not be retried (a partly sent frame counts as sent).
        attempt.phase = CallPhase.ARGUMENTS_SENT
        stream.settimeout(deadline.time_left("sending the arguments"))
        stream.send_all(data)
        event = self._next_event(conn, deadline, "waiting for the result")
        if not isinstance(event, CallResult):
            raise ProtocolError(f"{conn.url}: expected the call's result, got {type(event).__name__}")
        conn.calls += 1
        conn.last_used = time.monotonic()
        return result_or_overload(event.result)

    def _execute_pipelined(
        self,
        conn: Connection,
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
        stream.settimeout(deadline.time_left("sending the call"))
        owed = machine.data_to_send()  # pongs owed to the server's pings, if any
        data = machine.send_call(proposal, args, kwargs or None, trace)
        # The arguments go with the proposal: from the first byte on the handler may run (at-most-once).
        attempt.phase = CallPhase.ARGUMENTS_SENT
        stream.send_all(owed + data if owed else data)
        try:
            event = self._next_event(conn, deadline, "waiting for the result")
        except ConnectionClosedError:
            if machine.state is ConnectionState.CLOSED:
                # The server's goodbye came first: it closed the idle connection without reading our call.
                attempt.phase = CallPhase.PROPOSING
            raise
        return call_outcome(conn, event)

    @staticmethod
    def _next_event(conn: Connection, deadline: Deadline, what: str) -> object:
        machine = conn.machine
        stream = conn.stream
        if machine.needs_data():  # right after our send nothing is buffered: read at once, then ask the machine
            stream.settimeout(deadline.time_left(what))
            machine.receive_data(stream.recv(_RECV_SIZE))
        for _ in range(_MAX_READS_PER_EVENT):
            event = machine.next_event()
            if event is NEED_DATA:
                owed = machine.data_to_send()  # pongs to the server's pings
                if owed:
                    stream.settimeout(deadline.time_left(what))
                    stream.send_all(owed)
                stream.settimeout(deadline.time_left(what))
                machine.receive_data(stream.recv(_RECV_SIZE))
            elif type(event) is PongReceived:
                continue  # the answer to a keepalive we sent while the connection was idle
            elif type(event) is ConnectionClosed:
                raise ConnectionClosedError(f"{conn.url} closed the connection while {what}")
            else:
                return event
        raise ProtocolError(f"{conn.url}: no complete message after {_MAX_READS_PER_EVENT} reads while {what}")
