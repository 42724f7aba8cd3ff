"""One accepted connection after its handshake: bytes in, protocol events, authorization, calls out.

A :class:`Channel` is owned by exactly one thread at a time — the reactor's selector thread while it waits for
bytes, or a worker while it runs a call (and, on a reused connection, while it briefly reads the next request
itself) — so it needs no lock. :meth:`Channel.advance` turns whatever bytes are buffered into one
:class:`Step`: wait for more, a complete call to run, or close.

Timing rules (what makes slow or silent clients cheap): every message must be complete within ``read_timeout`` of
the moment we started waiting for it (the first proposal after the handshake, the arguments after the ack), and
bytes arriving slowly never extend that; an idle reused connection may wait ``idle_timeout`` for its next proposal,
and a ``dka`` ping restarts that wait. The reactor closes a channel whose :attr:`Channel.deadline` has passed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import logging
import select
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from rpcframework.codec import encode
from rpcframework.errors import CodecError, ProtocolError, RPCFrameworkError
from rpcframework.protocol.events import (
    NEED_DATA,
    PAUSED,
    ArgumentsReceived,
    ConnectionState,
    ProposalReceived,
)
from rpcframework.protocol.framing import encode_frame
from rpcframework.protocol.messages import ActionType, Extensions, Feature, Proposal, TraceContext, sanitize_result
from rpcframework.protocol.rpc import ProposalEvents, ServerConnection
from rpcframework.returnvalues import ENOAUTH, EOVERLOAD, S_ERROR, DReturn
from rpcframework.security.authz import Caller
from rpcframework.security.registry import Registry
from rpcframework.server.admission import Admission
from rpcframework.server.audit import audit_call, audit_logger
from rpcframework.server.context import RequestContext
from rpcframework.server.guard import ConnectionGuard, guard_settings
from rpcframework.server.observe import observe_refusal
from rpcframework.server.pipe import GONE_EVENTS, RECV_SIZE, StreamPipe
from rpcframework.server.service import Service
from rpcframework.server.transfer_call import run_transfer
from rpcframework.transports.base import Stream

if TYPE_CHECKING:
    from rpcframework.server.limits import Holding
    from rpcframework.server.revalidate import PeerCheck

__all__ = ["SERVER_EXTENSIONS", "Call", "Channel", "ChannelLimits", "Step", "StreamPipe"]

logger = logging.getLogger(__name__)

#: What this server negotiates with rpcframework clients.
SERVER_EXTENSIONS: Final = Extensions(
    features=frozenset(
        {
            Feature.REUSE,
            Feature.KWARGS,
            Feature.TYPED,
            Feature.STREAM,
            Feature.RESUME,
            Feature.PIPELINE,
            Feature.CRC32,
            Feature.TRACE,
        }
    )
)


class Step(enum.Enum):
    """What :meth:`Channel.advance` found."""

    WAIT = "wait"  # a message is incomplete: wait for bytes (until the deadline)
    CALL = "call"  # a complete call is in :attr:`Channel.call`
    CLOSE = "close"  # the exchange is over, refused, or broken: close the connection


# Enum members as module constants: EnumType defines __getattr__ (3.11), a slow lookup on the per-call path.
_STEP_WAIT: Final = Step.WAIT
_STEP_CALL: Final = Step.CALL
_STEP_CLOSE: Final = Step.CLOSE
_IDLE: Final = ConnectionState.IDLE
_ACCEPTED: Final = ConnectionState.ACCEPTED
_HANDED_OVER: Final = ConnectionState.HANDED_OVER


@dataclass(frozen=True, slots=True)
class ChannelLimits:
    """Per-connection limits (seconds and bytes)."""

    read_timeout: float = 30.0
    idle_timeout: float = 300.0
    write_timeout: float = 30.0
    max_message_size: int = 64 * 1024 * 1024
    max_calls: int = 100_000  # calls (answered or refused) on one connection before it is closed after a result
    transfer_idle_timeout: float = 10.0  # each read of a file transfer (its worker waits on the peer that long)


class Call(NamedTuple):
    """A complete request: authorized proposal plus decoded arguments.

    A named tuple, built once per call: as immutable as a frozen dataclass, at about a third of its construction
    cost (a frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``)."""

    service: Service
    method: str
    args: list[Any]
    kwargs: dict[str, Any]
    context: RequestContext
    caller: str
    transfer: bool = False  # a FileTransfer action: ``method`` is the direction


def _extensions_for(limits: ChannelLimits) -> Extensions:
    """What we negotiate, announcing our idle timeout (a pipelining client stays well within it)."""
    return _extensions_with_idle(limits.idle_timeout)


@functools.lru_cache(maxsize=64)
def _extensions_with_idle(idle_timeout: float) -> Extensions:
    # Built once per idle-timeout value (a handful per process), not per connection.
    return dataclasses.replace(SERVER_EXTENSIONS, idle_timeout=idle_timeout)


def _clean(text: str) -> str:
    # Peer strings end up in refusals and logs; escape control characters so they cannot forge lines.
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


class Channel:
    """A handshaken connection to one port's services (``services`` maps ``System/Component`` names)."""

    def __init__(
        self,
        stream: Stream,
        services: Mapping[str, Service],
        limits: ChannelLimits,
        proposals: ProposalEvents | None = None,
    ) -> None:
        self.stream = stream
        self.services = services
        self.limits = limits
        self.conn = ServerConnection(
            extensions=_extensions_for(limits), max_message_size=limits.max_message_size, proposals=proposals
        )
        self.peer_address = stream.peer_address
        identity = stream.peer_identity
        self.peer_dn: str | None = identity.dn if identity is not None else None
        self.peer_group: str | None = identity.dirac_group if identity is not None else None
        self.fd = stream.fileno()
        self.call: Call | None = None
        self.exchanges = 0
        self.closed = False
        self.deadline = time.monotonic() + limits.read_timeout
        self._wait_budget = limits.read_timeout  # how long the message being waited for may take
        self._ban_tree: object | None = None  # the configuration snapshot this address was last checked against
        self._current: tuple[Service, Proposal, Caller | None] | None = None
        self._context_cache: tuple[Proposal, Caller | None, RequestContext, str] | None = None
        self._trace: TraceContext | None = None  # the trace context of the current call, if the caller sent one
        # Set by the reactor's connection guard: a slot to give back on close, whom abuse is charged to (the
        # ticket), a peer to refuse.
        self.on_close: Callable[[], None] | None = None
        self.holding: Holding | None = None
        #: Set by the reactor for TLS peers: is the verified chain still unrevoked and unexpired (server/revalidate.py)
        self.peer_check: PeerCheck | None = None
        # Suspensions, authorization, transfer slots; whom abuse is charged to (the guard sets its ticket).
        self.admission = Admission(self.peer_dn, self.peer_group, self.peer_address[0], services)

    def __repr__(self) -> str:
        return f"<Channel {self.where} {self.conn.state.value}>"

    @property
    def where(self) -> str:
        return f"{self.peer_address[0]}:{self.peer_address[1]}"

    # -- reading ------------------------------------------------------------------------------------------------

    def read_once(self, timeout: float) -> bool:
        """Read what is available (waiting at most ``timeout``; 0: not at all); ``False`` when nothing came."""
        stream = self.stream
        stream.settimeout(timeout)
        try:
            data = stream.recv(RECV_SIZE)
        except TimeoutError:  # DeadlineExceeded: nothing arrived in time
            return False
        self._feed_all(data)
        return True

    def _feed_all(self, data: bytes) -> None:
        """Feed ``data``, then whatever TLS still holds: it may have decrypted more than we asked for, and a
        selector would never report those bytes."""
        self._feed(data)
        stream = self.stream
        for _ in range(64):
            if not data or stream.pending() <= 0:
                break
            data = stream.recv(RECV_SIZE)
            self._feed(data)

    def _feed(self, data: bytes) -> None:
        was_idle = self.conn.state is _IDLE
        self.conn.receive_data(data)
        if data and was_idle:
            # A proposal has started: it gets read_timeout from now at most, however slowly it trickles in.
            self.deadline = min(self.deadline, time.monotonic() + self.limits.read_timeout)

    def wants_read(self) -> bool:
        """Whether bytes are already buffered in the stream (read them before waiting on the selector)."""
        return self.stream.pending() > 0

    def next_request(self, timeout: float) -> Step | None:
        """The worker-owned read of a kept connection (and the selector's read, with ``timeout`` 0): wait at most
        ``timeout`` for the next request and return the step it makes (``None``: nothing arrived, the connection
        is idle and goes back to the selector). Bytes go through the protocol machine like any other: feed,
        ``advance``."""
        # Decrypted bytes still held by TLS need no check of their own here: they come after whatever the machine
        # buffers, and stream.recv returns them at once without waiting (a Stream's contract), into the same
        # paths as bytes from the socket. The selector never sees them, so _watch checks wants_read() on every
        # hand-back; a timeout below means TLS held nothing either. (One TLS call less per request.)
        conn = self.conn
        if not conn.needs_data():
            # The machine holds bytes: complete frames are processed at once; a partial one waits for its rest.
            step = self.advance()
            if step is not _STEP_WAIT:
                return step
            return self.advance() if self.read_once(timeout) else None
        stream = self.stream
        stream.settimeout(timeout)
        try:
            data = stream.recv(RECV_SIZE)
        except TimeoutError:  # DeadlineExceeded: nothing arrived in time
            return None
        conn.receive_data(data)
        step = self.advance()
        if step is _STEP_WAIT and data:
            # An incomplete message (rare: a request is one write): what read_once does for it, after the fact.
            # A proposal that has started gets read_timeout from now at most, however slowly it trickles in; TLS
            # may hold its rest already, where the selector would never see it.
            if conn.state is _IDLE and conn.held_bytes:
                self.deadline = min(self.deadline, time.monotonic() + self.limits.read_timeout)
            if stream.pending() > 0 and self.read_once(0.0):
                return self.advance()
        return step

    # -- the protocol -------------------------------------------------------------------------------------------

    def advance(self) -> Step:
        """Process buffered bytes until a call is complete, more bytes are needed, or the connection must close."""
        conn = self.conn
        for _ in range(1024):  # bounded: each pass consumes a frame
            try:
                event = conn.next_event()
            except (ProtocolError, RPCFrameworkError) as exc:
                logger.info("closing %s after a protocol error: %s", self.where, exc)
                self.admission.charge("protocol error", conn.proposal)
                self._send_quietly(conn.data_to_send())
                return _STEP_CLOSE
            pending = conn.data_to_send()
            if pending:  # keepalive pongs: a ping also restarts the idle wait
                if not self._send_quietly(pending):
                    return _STEP_CLOSE
                if conn.state is _IDLE:
                    self.restart_wait(self._wait_budget)
            # The two events of every call first, without the general dispatch of _on_event.
            if type(event) is ArgumentsReceived:
                self.call = self._make_call(event.args, event.kwargs)
                return _STEP_CALL
            step = self._on_proposal_event(event) if type(event) is ProposalReceived else self._on_event(event)
            if step is _STEP_WAIT and not self._covered():
                return _STEP_CLOSE
            if step is not None:
                return step
        return _STEP_WAIT

    def _covered(self) -> bool:
        """Whether what this connection holds while it waits is within the bytes-in-flight limits (a proposal not
        yet authorized, arguments of a caller with no registered identity, those of a refused pipelined call); if
        not, the peer has been told so and the connection must close (``docs/security.md``, "Bytes in flight")."""
        holding = self.holding
        held = self.conn.held_bytes
        if holding is None or holding.covers(held):
            return True
        current = self._current
        service = None
        if self.conn.state is _ACCEPTED and current is not None:
            if current[2] is not None and not current[2].anonymous:
                return True  # a registered identity answers for its own arguments
            service = current[0].name
        problem = holding.cover(held, service)
        if problem is None:
            return True
        logger.warning("closing %s: %s", self.where, problem)
        with contextlib.suppress(CodecError):
            refusal = sanitize_result(S_ERROR(EOVERLOAD, problem))
            self._send_quietly(encode_frame(encode(refusal, self.conn.encoding)))
        return False

    def _on_event(self, event: object) -> Step | None:
        """The step an event leads to, or ``None`` to keep processing buffered frames."""
        if event is NEED_DATA:
            return _STEP_WAIT
        if isinstance(event, ProposalReceived):
            return self._on_proposal_event(event)
        call = self._call_for(event)
        if call is not None:
            self.call = call
            return _STEP_CALL
        # ConnectionClosed, or PAUSED: a non-RPC action was handed over, which we never accept.
        return _STEP_CLOSE

    def _call_for(self, event: object) -> Call | None:
        """The call an event completes: RPC arguments, or a FileTransfer handed over after its ack."""
        if isinstance(event, ArgumentsReceived):
            return self._make_call(event.args, event.kwargs)
        current = self._current
        handed_over = event is PAUSED and self.conn.state is _HANDED_OVER
        if handed_over and current is not None and current[1].action_type is ActionType.FileTransfer:
            return self._make_call([], {}, transfer=True)
        return None

    def _on_proposal_event(self, event: ProposalReceived) -> Step | None:
        proposal = event.proposal
        self._trace = event.trace
        service = self.services.get(proposal.service)
        if service is not None and service.config_tree() is not self._ban_tree and self._banned_since_accept(service):
            return _STEP_CLOSE
        peer_check = self.peer_check
        problem = peer_check.problem() if peer_check is not None else None
        if problem is not None:  # revoked or expired since the handshake: say why, then close
            logger.info("closing %s: %s", self.where, problem)
            self._refuse(S_ERROR(ENOAUTH, problem), proposal, charge=False)
            return _STEP_CLOSE
        if self._on_proposal(proposal, service):
            return None
        if self.conn.state is not _IDLE:
            return _STEP_CLOSE
        self.restart_wait(self.limits.idle_timeout)  # refused, but reuse keeps the connection
        return None

    def admitted_under(self, tree: object | None) -> None:
        """The guard admitted this address under ``tree`` (its bans and peer checks): the first proposal checks
        them again only when its service's snapshot is another one."""
        self._ban_tree = tree

    def _banned_since_accept(self, service: Service) -> bool:
        """True when a configuration reload banned this address while its connection stayed open.

        Bans and the peer checks (limited proxies) are applied at accept; a kept-alive connection would otherwise be
        served under the old rules until it idles out. Re-checked once per configuration snapshot (the caller
        compares the snapshot first, so the steady state pays one identity comparison).
        """
        tree = service.config_tree()
        if tree is self._ban_tree:
            return False
        if self._ban_tree is not None:  # the guard checked the accept-time snapshot already
            self.admission.peer_problem = ConnectionGuard.peer_problem(self.stream.peer_identity, guard_settings(tree))
        self._ban_tree = tree
        if Registry.for_config(tree).is_banned(self.peer_address[0]):
            logger.info("closing %s: the reloaded configuration bans its address", self.where)
            return True
        return False

    def _on_proposal(self, proposal: Proposal, service: Service | None) -> bool:
        """Accept (True) or refuse (False) the proposal (for ``service``, ``None``: not here) and send the answer."""
        if service is None:
            return self._refuse(S_ERROR(f"{_clean(proposal.service)} is not up in this server"), proposal)
        if proposal.action_type is not ActionType.RPC and proposal.action_type is not ActionType.FileTransfer:
            error = S_ERROR(f"{proposal.action_type.value} actions are not supported by this server")
            return self._refuse(error, proposal)
        caller = self.admission.admit(service, proposal)
        if not isinstance(caller, Caller):
            return self._refuse(caller[0], proposal, charge=caller[1])
        self._current = (service, proposal, caller)
        ack = self.conn.accept()  # b"" for a pipelined call: the ack goes out with the result
        if ack and not self._send_quietly(ack):
            return False
        # restart_wait(read_timeout), inline on the per-call path: the arguments must be complete by then
        self._wait_budget = budget = self.limits.read_timeout
        self.deadline = time.monotonic() + budget
        return True

    def _refuse(self, error: DReturn, proposal: Proposal, *, charge: bool = True) -> bool:
        assert not error["OK"]
        self._send_quietly(self.conn.refuse(error))
        self.exchanges += 1
        self._release_held()
        if charge and error.get("Errno") == ENOAUTH:
            self.admission.charge("refused authorization", proposal)
        observe_refusal(self.services, proposal, error)
        audit_call(
            peer_address=self.peer_address,
            peer_dn=self.peer_dn,
            caller=None,
            service=_clean(proposal.service),
            action=proposal.action_type.value,
            method=_clean(proposal.action_name),
            result=error,
            duration=0.0,
            refused=True,
        )
        return False

    def _make_call(self, args: list[Any], kwargs: dict[str, Any], *, transfer: bool = False) -> Call:
        assert self._current is not None  # set when the proposal was accepted
        service, proposal, caller = self._current
        cached = self._context_cache
        if cached is not None and cached[0] is proposal and cached[1] is caller:
            # Same proposal object and authorization as the last call: the immutable context is the same too.
            context, who = cached[2], cached[3]
        else:
            context = service.request_context(
                proposal,
                caller,
                peer_identity=self.stream.peer_identity,
                peer_address=self.peer_address,
                deadline=None,  # the protocol carries no client deadline yet (a per-call one would end this cache)
                is_connected=self.is_connected,
            )
            who = caller.describe() if caller is not None else "anonymous"
            self._context_cache = (proposal, caller, context, who)
        if self._trace is not None:  # per call: the cached context stays the untraced one
            context = dataclasses.replace(context, trace_context=self._trace.as_carrier())
        return Call(service, proposal.action_name, args, kwargs, context, who, transfer)

    # -- the call -----------------------------------------------------------------------------------------------

    def execute(self, call: Call) -> bool:
        """Run ``call`` and send its result; ``True`` when the connection stays open for another exchange."""
        if call.transfer:
            return self._execute_transfer(call)
        started = time.perf_counter()
        result = call.service.call(call.method, call.args, call.kwargs, call.context)
        self.call = None
        self.exchanges += 1
        sent = self.send_result(result)
        holding = self.holding
        if holding is not None:
            holding.release()
        if audit_logger.isEnabledFor(logging.INFO):  # audit_call's own first test, made before building its fields
            self.audit(call, result, time.perf_counter() - started, sent)
        if logger.isEnabledFor(logging.INFO):
            # An unknown method name is the peer's own text, and DIRAC's answer to it ("Unknown method <name>") too.
            outcome = "OK" if result["OK"] else f"ERROR: {_clean(str(result['Message']))}"
            logger.info(
                "%s %s by %s from %s: %s (%.2f ms)",
                call.service.name,
                _clean(call.method),
                call.caller,
                self.where,
                outcome if sent else f"{outcome} (not delivered: the caller left)",
                (time.perf_counter() - started) * 1000.0,
            )
        limits = self.limits
        if not sent or self.conn.state is not _IDLE or self.exchanges >= limits.max_calls:
            return False
        # restart_wait(limits.idle_timeout), inline on the per-call path
        self._wait_budget = idle = limits.idle_timeout
        self.deadline = time.monotonic() + idle
        return True

    def send_result(self, result: DReturn) -> bool:
        """Send ``result`` (or, if it cannot be encoded, an error saying so); ``False`` if the peer is gone."""
        try:
            data = self.conn.send_result(result)
        except CodecError as exc:
            logger.error("%s: the result could not be encoded: %s", self.where, exc)
            data = self.conn.send_result(S_ERROR("Server error: the result could not be encoded for the wire"))
        self.stream.settimeout(self.limits.write_timeout)
        try:
            self.stream.send_all(data)
        except (RPCFrameworkError, OSError) as exc:
            logger.info("could not send the result to %s: %s", self.where, exc)
            return False
        return True

    def answer_overloaded(self, error: DReturn) -> bool:
        """Answer a call that found no room in the worker queue, without waiting; ``True`` if the connection stays."""
        self.call = None
        self.exchanges += 1
        self._release_held()
        if self.conn.state is _HANDED_OVER:  # a transfer: the error answers its file info
            with contextlib.suppress(CodecError):
                self._send_quietly(encode_frame(encode(sanitize_result(error), self.conn.data_encoding)))
            return False
        try:
            data = self.conn.send_result(error)
        except CodecError:  # cannot happen for our own error text, but never let the selector thread die of it
            return False
        if not self._send_quietly(data) or self.conn.state is not _IDLE:
            return False
        self.restart_wait(self.limits.idle_timeout)
        return True

    # -- file transfers -----------------------------------------------------------------------------------------

    def _execute_transfer(self, call: Call) -> bool:
        """Run a FileTransfer exchange (file info, accept or refuse, the hook, its result) with blocking I/O."""
        self.call = None
        self.exchanges += 1
        self._release_held()
        try:
            if not run_transfer(self, call):
                return False
        finally:
            self.admission.end_transfer()
        self.conn.finish_hand_over()
        if self.conn.state is not _IDLE:
            return False
        self.restart_wait(self.limits.idle_timeout)
        return True

    def is_connected(self) -> bool:
        """Whether the peer still holds its side open (a poll that never blocks)."""
        if self.closed:
            return False
        poller = select.poll()
        poller.register(self.fd, GONE_EVENTS)
        return not poller.poll(0)

    # -- helpers ------------------------------------------------------------------------------------------------

    def audit(self, call: Call, result: DReturn, duration: float, delivered: bool) -> None:
        audit_call(
            peer_address=self.peer_address,
            peer_dn=self.peer_dn,
            caller=call.context.caller,
            service=call.service.name,
            action="FileTransfer" if call.transfer else "RPC",
            method=_clean(call.method),  # an unexported RPC method is let through to get DIRAC's answer
            result=result,
            duration=duration,
            delivered=delivered,
        )

    def _release_held(self) -> None:
        if self.holding is not None:
            self.holding.release()

    def restart_wait(self, budget: float) -> None:
        self._wait_budget = budget
        self.deadline = time.monotonic() + budget

    def _send_quietly(self, data: bytes) -> bool:
        """Send a small protocol message without waiting (the selector thread must never block on a peer)."""
        if not data:
            return True
        self.stream.settimeout(0.0)
        try:
            self.stream.send_all(data)
        except (RPCFrameworkError, OSError) as exc:
            logger.info("dropping %s: cannot send to it (%s)", self.where, exc)
            return False
        return True

    def close(self) -> None:
        if not self.closed:
            # An idle pipelining client may have a call in flight: the goodbye tells it we never read it.
            with contextlib.suppress(CodecError):
                self._send_quietly(self.conn.goodbye())
            self.closed = True
            self.stream.close()
            self.conn.discard_buffers()
            self._release_held()
            self.admission.end_transfer()
            if self.on_close is not None:
                self.on_close()
