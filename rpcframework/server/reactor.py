"""``ServiceReactor``: listening sockets, one selector thread, bounded worker pools.

Threading model:

* **one selector thread** accepts connections, closes banned addresses before any TLS work, drives every TLS
  handshake one non-blocking step at a time (``Backend.start_server_handshake``), reads proposal and argument
  frames, authorizes proposals and sends acks/refusals/pongs, and closes connections whose deadline passed. It
  never waits on a peer: a silent, slow or trickling client costs a socket and a timer, never a thread;
* **one worker pool per service** (``MaxThreads`` threads, a queue of ``MaxWaitingPetitions``) runs complete
  calls. A full queue is answered at once with ``S_ERROR(EOVERLOAD, ...)``;
* a connection is owned by one thread at a time. After a call on a connection that negotiated ``reuse``, the
  worker reads the next request itself for a moment (bytes already buffered, or readable within
  :attr:`ServiceReactor.inline_wait` seconds) and hands the connection back to the selector only when it is idle.
  This skips the selector-to-worker handoff, the largest per-call cost on a busy connection (design.md §5). A
  worker gives the connection back as soon as other requests wait in its pool's queue, so the pool stays fair.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import selectors
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any, Final

from rpcframework.errors import ConfigurationError, RPCFrameworkError
from rpcframework.observability.events import HandshakeOutcome, ServerObserver
from rpcframework.protocol.rpc import ProposalEvents
from rpcframework.returnvalues import EOVERLOAD
from rpcframework.server.connection import Call, Channel, ChannelLimits, Step
from rpcframework.server.guard import ConnectionGuard, GuardSettings, Ticket, guard_settings
from rpcframework.server.listeners import Listener, bind_listeners
from rpcframework.server.observe import failure_reason, observe_connection, observe_reloads
from rpcframework.server.pool import WorkerPool
from rpcframework.server.revalidate import close_unservable_idle
from rpcframework.server.service import Service, watch_configuration
from rpcframework.transports.base import HandshakeStatus, ServerHandshake, TLSConfig

__all__ = ["ServiceReactor", "run"]

logger = logging.getLogger(__name__)

_MIN_BACKLOG: Final = 128
_ACCEPTS_PER_WAKE: Final = 64
_SELECT_TIMEOUT: Final = 0.1
_SWEEP_INTERVAL: Final = 0.05
#: Calls a worker serves in a row on one connection before giving it back even when nobody else waits.
_INLINE_MAX_CALLS: Final = 10_000
#: How often the number of temporary bans is reported to an observer.
_BAN_REPORT_INTERVAL: Final = 1.0


@dataclass(eq=False)
class _Handshake:
    handshake: ServerHandshake
    listener: Listener
    deadline: float
    fd: int
    ticket: Ticket


class ServiceReactor:
    """Serves :class:`Service` objects over ``dips://`` (TLS) or ``dip://`` (plain) on ``host``.

    Services with the same port share one listening socket and are told apart by the name in the proposal; each
    service with port 0 gets its own ephemeral port, unless ``shared_port`` puts every service on that one port
    (0: one ephemeral port for all). ``backend`` is the TLS back end for ``dips`` (``"pyopenssl"`` or
    ``"m2crypto"``); ``tls`` the server's credentials (default: ``/DIRAC/Security`` in the first service's
    configuration, then the usual host-certificate and CA-directory lookup). Timeouts: ``handshake_timeout``
    for the TLS handshake, ``read_timeout`` for each incoming message from the moment it is expected,
    ``idle_timeout`` between calls on a reused connection, ``write_timeout`` for sending a result,
    ``transfer_idle_timeout`` for each read of a file transfer (a stalled upload frees its worker that soon).

    Use as a context manager (``with ServiceReactor([...]) as reactor:``), or :meth:`start`/:meth:`stop`, or
    :meth:`serve_forever` in a program's main thread.
    """

    def __init__(
        self,
        services: Iterable[Service],
        *,
        host: str = "0.0.0.0",
        shared_port: int | None = None,
        backend: str = "pyopenssl",
        tls: TLSConfig | None = None,
        handshake_timeout: float = 10.0,
        read_timeout: float = 30.0,
        idle_timeout: float = 300.0,
        write_timeout: float = 30.0,
        transfer_idle_timeout: float = 10.0,
        max_message_size: int = 64 * 1024 * 1024,
        backlog: int = _MIN_BACKLOG,
        inline_wait: float = 0.002,
        observer: ServerObserver | None = None,
    ) -> None:
        self.services = list(services)
        if not self.services:
            raise ConfigurationError("a ServiceReactor needs at least one service")
        names = [service.name for service in self.services]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"a service is listed twice: {', '.join(sorted(names))}")
        self.host = host
        self.shared_port = shared_port
        self.backend_name = backend
        self.tls = tls
        self.handshake_timeout = handshake_timeout
        self.limits = ChannelLimits(
            read_timeout, idle_timeout, write_timeout, max_message_size, transfer_idle_timeout=transfer_idle_timeout
        )
        self.backlog = max(backlog, _MIN_BACKLOG)
        self.inline_wait = inline_wait
        #: Told about calls, connections, handshakes and bans (metrics, tracing); see rpcframework.observability.
        self.observer = observer
        for service in self.services:
            service.observer = observer
        self._bans_reported = -1
        self._next_ban_report = 0.0
        #: Connection counts, BannedIPs and temporary bans (server/guard.py), consulted before any TLS work.
        self.guard = ConnectionGuard()
        self.urls: dict[str, str] = {}
        self._listeners: list[Listener] = []
        self._pools: dict[str, WorkerPool] = {}
        self._selector: selectors.BaseSelector | None = None
        self._thread: threading.Thread | None = None
        # Made by start(), not here: a reactor bound in a parent and started in forked children (ProcessGroup)
        # must not share one wake-up pair between processes.
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._returned: queue.SimpleQueue[Channel] = queue.SimpleQueue()
        self._stopping = False
        self._selector_done = threading.Event()
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()
        self._unwatch: list[Callable[[], None]] = []
        #: Proposals parsed once for all connections (a DIRAC client sends the same bytes on each new one).
        self._proposals = ProposalEvents()
        self._limits_cache: tuple[GuardSettings, ChannelLimits, ChannelLimits] | None = None

    # -- public -------------------------------------------------------------------------------------------------

    def url(self, name: str) -> str:
        """The URL of service ``name`` once started (``dips://127.0.0.1:PORT/System/Component``)."""
        return self.urls[name]

    @property
    def ports(self) -> dict[str, int]:
        """The bound port of each service."""
        return {name: int(url.rsplit(":", 1)[1].split("/", 1)[0]) for name, url in self.urls.items()}

    def bind(self) -> ServiceReactor:
        """Bind the listening sockets (and check the TLS credentials) without starting anything; :attr:`urls` is
        then known. :meth:`start` binds if this was not called; a
        :class:`~rpcframework.server.processes.ProcessGroup` binds in the parent and starts in each child."""
        if not self._listeners:
            try:
                self._bind_all()
            except BaseException:
                self._close_listeners()
                self._listeners.clear()
                raise
        return self

    def start(self) -> ServiceReactor:
        """Initialize every service, bind, and start the selector thread and the worker pools."""
        if self._thread is not None:
            return self
        try:
            self.bind()
            for service in self.services:
                service.start(self.urls[service.name])
        except BaseException:
            self._close_listeners()
            raise
        for service in self.services:
            pool = WorkerPool(f"rpc-{service.name}", service.max_threads, service.max_waiting_petitions)
            pool.start()
            self._pools[service.name] = pool
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        for listener in self._listeners:
            self._selector.register(listener.sock, selectors.EVENT_READ, listener)
        self._unwatch = [watch_configuration(self.services, guard_settings), self._observe_reloads()]
        self._thread = threading.Thread(target=self._run_selector, name="rpc-reactor", daemon=True)
        self._thread.start()
        for name, url in self.urls.items():
            logger.info("serving %s at %s", name, url)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, close idle connections, let in-flight calls finish within ``timeout``, then stop."""
        with self._stop_lock:
            if self._stopped.is_set():
                return
            self._stopping = True
            self._wake()
            if self._thread is not None:
                self._selector_done.wait(min(timeout, 5.0) + 1.0)
            end = time.monotonic() + timeout
            for pool in self._pools.values():
                pool.stop(max(end - time.monotonic(), 0.0))
            if self._thread is not None:
                self._thread.join(1.0)
            self._drain_returned()
            self._close_listeners()
            for unwatch in self._unwatch:  # the selector thread read no file: reloads ran on the store's thread
                unwatch()
            for wake in (self._wake_r, self._wake_w):
                if wake is not None:
                    wake.close()
            self._stopped.set()
        logger.info("reactor stopped")

    def serve_forever(self) -> None:
        """Start, then block until :meth:`stop` (SIGTERM/SIGINT stop it when called from the main thread)."""
        self.start()
        previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[int(sig)] = signal.signal(sig, self._on_signal)
        try:
            while not self._stopped.wait(0.5):
                pass
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def __enter__(self) -> ServiceReactor:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- set-up -------------------------------------------------------------------------------------------------

    def _observe_reloads(self) -> Callable[[], None]:
        if self.observer is None:
            return lambda: None
        caches = [getattr(listener.backend, "contexts", None) for listener in self._listeners]
        return observe_reloads(self.observer, [service._config for service in self.services], caches)

    def _bind_all(self) -> None:
        bind_listeners(
            self.services,
            self._listeners,
            self.urls,
            host=self.host,
            shared_port=self.shared_port,
            backend_name=self.backend_name,
            tls=self.tls,
            backlog=self.backlog,
        )

    # -- the selector thread ------------------------------------------------------------------------------------

    def _run_selector(self) -> None:
        selector = self._selector
        assert selector is not None
        next_sweep = 0.0
        try:
            while not self._stopping:
                for key, mask in selector.select(_SELECT_TIMEOUT):
                    try:
                        self._on_ready(key, mask)
                    except Exception:  # a bug met by one connection must not end every other one with the thread
                        logger.exception("unexpected failure in the reactor's selector thread; serving on")
                now = time.monotonic()
                if now >= next_sweep:
                    self._expire(now)
                    close_unservable_idle(selector, [entry.watch for entry in self._listeners if entry.watch])
                    next_sweep = now + _SWEEP_INTERVAL
                    if self.observer is not None and now >= self._next_ban_report:
                        self._report_bans(now)
        except Exception:
            logger.exception("the reactor's selector thread failed; closing every connection")
        finally:
            self._shutdown_selector()

    def _on_ready(self, key: selectors.SelectorKey, mask: int) -> None:
        data = key.data
        if data is None:
            self._take_returned()
        elif isinstance(data, Listener):
            self._accept(data)
        elif isinstance(data, _Handshake):
            self._step_handshake(data)
        elif isinstance(data, Channel):
            self._read_channel(data)

    def _accept(self, listener: Listener) -> None:
        for _ in range(_ACCEPTS_PER_WAKE):
            try:
                sock, address = listener.sock.accept()
            except BlockingIOError:
                return
            except OSError as exc:  # EMFILE and friends: keep serving the connections we have
                logger.warning("accept failed on %s: %s", listener.sock.getsockname(), exc)
                return
            try:
                ticket = self.guard.admit(str(address[0]), listener.snapshot())
            except BaseException:
                sock.close()
                raise
            if ticket is None:  # banned or over a connection limit: closed before any TLS work, without a word
                sock.close()
                continue
            try:
                handshake = listener.backend.start_server_handshake(sock, listener.tls)
            except RPCFrameworkError as exc:
                logger.info("cannot start the handshake with %s: %s", address[0], exc)
                ticket.release()
                continue
            deadline = time.monotonic() + (ticket.settings.handshake_timeout or self.handshake_timeout)
            entry = _Handshake(handshake, listener, deadline, handshake.fileno(), ticket)
            self._step_handshake(entry, registered=False)

    def _step_handshake(self, entry: _Handshake, *, registered: bool = True) -> None:
        selector = self._selector
        assert selector is not None
        try:
            status = entry.handshake.step()
            if status is HandshakeStatus.DONE:
                if registered:
                    selector.unregister(entry.fd)
                    registered = False
                ticket = entry.ticket
                channel = Channel(
                    entry.handshake.stream(), entry.listener.services, self._channel_limits(ticket), self._proposals
                )
                if entry.listener.watch is not None:
                    channel.peer_check = entry.listener.watch.peer_check(channel.stream.peer_identity)
                ticket.attach(channel)
                channel.admitted_under(ticket.tree)
                if self.observer is not None:
                    observe_connection(self.observer, channel)
                self._watch(channel)
                return
        except Exception as exc:
            if isinstance(exc, RPCFrameworkError):
                logger.info("handshake failed: %s", exc)
                entry.ticket.handshake_failed(exc)
                if self.observer is not None:
                    self.observer.handshake(HandshakeOutcome.FAILED, failure_reason(exc))
            else:  # our bug, not the peer's doing: no failure counted against it
                logger.exception("handshake with %s failed unexpectedly", entry.ticket.address)
            entry.handshake.close()
            entry.ticket.release()
            if registered:
                selector.unregister(entry.fd)
            return
        events = selectors.EVENT_READ if status is HandshakeStatus.WANT_READ else selectors.EVENT_WRITE
        if registered:
            selector.modify(entry.fd, events, entry)
        else:
            selector.register(entry.fd, events, entry)

    def _channel_limits(self, ticket: Ticket) -> ChannelLimits:
        """The connection limits under the ticket's configuration snapshot, built once per snapshot."""
        settings, cached = ticket.settings, self._limits_cache
        if cached is not None and cached[0] is settings and cached[1] is self.limits:
            return cached[2]
        limits = settings.channel_limits(self.limits)
        self._limits_cache = (settings, self.limits, limits)
        return limits

    def _watch(self, channel: Channel) -> None:
        """Give ``channel`` to the selector (bytes already buffered in TLS are processed right away)."""
        if self._stopping or channel.closed:
            channel.close()
            return
        assert self._selector is not None
        self._selector.register(channel.fd, selectors.EVENT_READ, channel)
        if channel.wants_read():
            self._read_channel(channel)

    def _read_channel(self, channel: Channel) -> None:
        try:
            # The selector reported bytes: read them without waiting and run them through the protocol machine.
            step = channel.next_request(0.0) or Step.WAIT
        except (RPCFrameworkError, OSError) as exc:
            logger.info("dropping %s: %s", channel.where, exc)
            step = Step.CLOSE
        except Exception:  # a bug (authorization, configuration): close this connection, keep the selector
            logger.exception("dropping %s after an unexpected failure", channel.where)
            step = Step.CLOSE
        if step is Step.WAIT:
            return
        assert self._selector is not None
        self._selector.unregister(channel.fd)
        if step is Step.CLOSE:
            channel.close()
            return
        call = channel.call
        assert call is not None
        pool = self._pools[call.service.name]
        if pool.submit(lambda: self._serve(channel, call)):
            if self.observer is not None:
                self.observer.queue_depth(call.service.name, pool.waiting)
        else:
            busy = pool.overload_error(f"{call.service.name} is busy ({pool.waiting} requests waiting); retry later")
            logger.warning("%s overloaded: refused %s from %s", call.service.name, call.method, channel.where)
            self._observe_overload(call)
            if channel.answer_overloaded(busy):
                self._watch(channel)
            else:
                channel.close()

    def _expire(self, now: float) -> None:
        selector = self._selector
        assert selector is not None
        expired = []
        for key in list(selector.get_map().values()):
            data = key.data
            if isinstance(data, _Handshake | Channel) and data.deadline <= now:
                expired.append((key.fd, data))
        for fd, data in expired:
            selector.unregister(fd)
            if isinstance(data, _Handshake):
                logger.info("handshake from %s took too long; closed", data.ticket.address)
                if self.observer is not None:
                    self.observer.handshake(HandshakeOutcome.FAILED, "timeout")
                data.handshake.close()
                data.ticket.failed("TLS handshake timed out")
                data.ticket.release()
            else:
                logger.info("closing %s: nothing complete arrived in time", data.where)
                data.close()

    def _take_returned(self) -> None:
        wake = self._wake_r
        if wake is not None:
            with contextlib.suppress(OSError):
                wake.recv(4096)
        for _ in range(100_000):
            try:
                channel = self._returned.get_nowait()
            except queue.Empty:
                return
            self._watch(channel)

    def _shutdown_selector(self) -> None:
        selector = self._selector
        assert selector is not None
        for key in list(selector.get_map().values()):
            data = key.data
            if isinstance(data, _Handshake):
                data.handshake.close()
            elif isinstance(data, Channel):
                data.close()
        selector.close()
        self._close_listeners()
        self._selector_done.set()

    # -- workers ------------------------------------------------------------------------------------------------

    def _serve(self, channel: Channel, call: Call) -> None:
        """Worker task: run ``call``; on a reused connection, serve the next requests while they come quickly."""
        pool = self._pools[call.service.name]
        if self.observer is not None:
            self.observer.queue_depth(call.service.name, pool.waiting)
        try:
            keep = channel.execute(call)
            for _ in range(_INLINE_MAX_CALLS):
                if not keep or self._stopping or pool.waiting:
                    break
                step = channel.next_request(self.inline_wait)
                if step is None:
                    break  # idle: back to the selector
                if step is Step.CLOSE:
                    keep = False
                elif step is Step.CALL:
                    next_call = channel.call
                    assert next_call is not None
                    if next_call.service is not call.service:
                        break  # another service's call belongs to that service's pool
                    keep = channel.execute(next_call)
        except (RPCFrameworkError, OSError) as exc:
            logger.info("dropping %s: %s", channel.where, exc)
            keep = False
        except Exception:  # without this the connection (and its guard slot) would stay open, owned by nobody
            logger.exception("dropping %s after an unexpected failure", channel.where)
            keep = False
        if keep and not self._stopping:
            self._hand_back(channel)
        else:
            channel.close()

    def _hand_back(self, channel: Channel) -> None:
        if channel.call is not None:
            # A complete call for another service was read inline: queue it there as the selector would.
            call = channel.call
            if self._pools[call.service.name].submit(lambda: self._serve(channel, call)):
                return
            busy = self._pools[call.service.name].overload_error(f"{call.service.name} is busy; retry later")
            self._observe_overload(call)
            if not channel.answer_overloaded(busy):
                channel.close()
                return
        if self._selector_done.is_set():
            channel.close()
            return
        self._returned.put(channel)
        self._wake()
        if self._selector_done.is_set():
            # The selector finished between the check and the put: nobody else will take it from the queue.
            self._drain_returned()

    # -- helpers ------------------------------------------------------------------------------------------------

    def _observe_overload(self, call: Call) -> None:
        observer = self.observer
        if observer is not None:
            service = call.service
            action = "FileTransfer" if call.transfer else "RPC"
            method = call.method if call.transfer else service.method_label(call.method)
            observer.overloaded(service.name)
            observer.call_refused(service.name, action, method, EOVERLOAD)

    def _report_bans(self, now: float) -> None:
        assert self.observer is not None
        self._next_ban_report = now + _BAN_REPORT_INTERVAL
        count = len(self.guard.temporary_bans())
        if count != self._bans_reported:
            self._bans_reported = count
            self.observer.bans_in_force(count)

    def _wake(self) -> None:
        wake = self._wake_w
        if wake is not None:
            with contextlib.suppress(OSError):
                wake.send(b"\0")

    def _drain_returned(self) -> None:
        for _ in range(100_000):
            try:
                self._returned.get_nowait().close()
            except queue.Empty:
                return

    def _close_listeners(self) -> None:
        for listener in self._listeners:
            listener.sock.close()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        logger.info("signal %d: stopping", signum)
        # stop() joins threads; run it outside the signal handler's frame.
        threading.Thread(target=self.stop, name="rpc-reactor-stop", daemon=True).start()


def run(services: Iterable[Service], *, processes: int | None = None, **options: Any) -> None:
    """Serve ``services`` until SIGTERM/SIGINT.

    ``processes``: worker processes (:class:`~rpcframework.server.processes.ProcessGroup`); default: the largest
    ``CloneProcesses`` of the services. 0 or 1 serves from this process."""
    services = list(services)
    if processes is None:
        processes = max((service.clone_processes for service in services), default=0)
    if processes > 1:
        from rpcframework.server.processes import ProcessGroup

        ProcessGroup(services, processes=processes, **options).serve_forever()
    else:
        ServiceReactor(services, **options).serve_forever()
