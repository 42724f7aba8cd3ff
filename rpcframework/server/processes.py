"""``ProcessGroup``: one set of services served by N forked worker processes (DIRAC's ``CloneProcesses``).

One Python process is capped by the GIL at about one core of request handling. A :class:`ProcessGroup` uses more:

* the **parent** binds the listening sockets once (:meth:`ServiceReactor.bind`, which also checks the TLS
  credentials), so ``port 0`` still gives one port and one URL per service, and startup errors surface in the
  parent. It then forks ``processes`` children and only supervises them: it never accepts a connection;
* each **child** runs a complete :class:`ServiceReactor` (selector thread + worker pools) on the *inherited*
  listening sockets, as DIRAC's clones do. Every child waits on the same sockets and whichever is free first
  accepts, so a busy child takes fewer new connections. (``SO_REUSEPORT`` with a socket per child was not chosen:
  the kernel spreads connections by a hash whatever the children's load, connections queued on a dying child's
  socket are lost, and ``port 0`` would need the parent to bind first anyway.) Each child runs the handlers'
  ``initializeHandler`` itself, once per process as in DIRAC;
* **per-process state**: temporary bans and connection counts (``server/guard.py``), the peer-identity and
  authorization caches, ``MaxThreads``/``MaxWaitingPetitions`` pools, per-method limits and any class-level
  state a handler keeps are per child: a ban one child imposes is not seen by the others, and the limits apply
  per child (``MaxConnections`` x N in total). ``BannedIPs`` from the configuration applies everywhere;
* **stopping**: :meth:`stop` (and SIGTERM/SIGINT under :meth:`serve_forever` or ``rpcframework serve``) sends
  SIGTERM to every child, which stops accepting and lets in-flight calls finish within ``drain_timeout``; a child
  still alive after that (plus a short grace) is killed. Children ignore SIGINT (a terminal's Ctrl-C reaches the
  whole process group; the parent decides) and stop by themselves when the parent disappears. Every child is
  reaped;
* **crashes**: :meth:`poll` reaps a child that exited while the group runs, logs it (and records it in
  :attr:`crashes`) and forks a replacement, at most ``max_restarts`` times per ``restart_window`` seconds.

Linux/POSIX only (``os.fork``). The parent should fork before starting threads of its own.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterable
from types import FrameType, TracebackType
from typing import Any, Final

from rpcframework.errors import ConfigurationError
from rpcframework.server.reactor import ServiceReactor
from rpcframework.server.service import Service, ServiceStartError

__all__ = ["ProcessGroup"]

logger = logging.getLogger(__name__)

#: How long a new child may take to initialize its services and report that it serves.
_READY_TIMEOUT: Final = 30.0
#: Seconds between checks (children: of the stop flag and the parent; parent: of the children).
_POLL: Final = 0.5
#: A child still alive this long after the drain timeout is killed.
_KILL_GRACE: Final = 2.0
_READY: Final = b"ready"
_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)


class ProcessGroup:
    """Serve ``services`` from ``processes`` forked children sharing the listening sockets bound by this process.

    ``reactor_options`` go to each child's :class:`ServiceReactor` (``host``, ``shared_port``, ``backend``,
    ``tls``, timeouts). The interface mirrors the reactor's: :meth:`start`/:meth:`stop`, a context manager,
    :meth:`serve_forever`, :attr:`urls`/:meth:`url`/:attr:`ports`; :meth:`poll` supervises (reaps, reports and
    restarts crashed children) and must be called now and then by whoever runs the group (:meth:`serve_forever`
    and ``rpcframework serve`` do, every half second).
    """

    def __init__(
        self,
        services: Iterable[Service],
        *,
        processes: int,
        drain_timeout: float = 10.0,
        max_restarts: int = 5,
        restart_window: float = 60.0,
        child_exited: Callable[[int], None] | None = None,
        **reactor_options: Any,
    ) -> None:
        if not hasattr(os, "fork"):
            raise ConfigurationError("serving from several processes needs os.fork (Linux or another POSIX system)")
        if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
            raise ConfigurationError(f"processes must be a positive integer, not {processes!r}")
        self.reactor = ServiceReactor(services, **reactor_options)
        self.processes = processes
        self.drain_timeout = drain_timeout
        self.max_restarts = max_restarts
        self.restart_window = restart_window
        #: Called with the pid of every child reaped (e.g. to drop its live metrics gauges).
        self.child_exited = child_exited
        #: ``(pid, wait status as os.waitstatus_to_exitcode gives it)`` of every child that exited unasked.
        self.crashes: list[tuple[int, int]] = []
        self._children: dict[int, int] = {}  # pid -> slot
        self._restarts: collections.deque[float] = collections.deque()
        self._stopping = False
        self._started = False

    # -- public -------------------------------------------------------------------------------------------------

    @property
    def urls(self) -> dict[str, str]:
        """Each service's URL (known once :meth:`start` bound the sockets)."""
        return self.reactor.urls

    def url(self, name: str) -> str:
        """The URL of service ``name``."""
        return self.reactor.url(name)

    @property
    def ports(self) -> dict[str, int]:
        """The bound port of each service."""
        return self.reactor.ports

    @property
    def pids(self) -> list[int]:
        """The process ids of the running children."""
        return sorted(self._children)

    def start(self) -> ProcessGroup:
        """Bind, then fork the children and wait until each serves (a child that cannot start stops the group)."""
        if self._started:
            return self
        self._started = True
        self.reactor.bind()
        try:
            for slot in range(self.processes):
                self._spawn(slot)
        except BaseException:
            self.stop(timeout=0.0)
            raise
        logger.info("serving from %d processes: %s", self.processes, ", ".join(map(str, self.pids)))
        return self

    def poll(self) -> bool:
        """Reap children that exited, report them and restart them (bounded); False when no child is left."""
        for pid in list(self._children):
            status = _try_reap(pid)
            if status is None:
                continue
            slot = self._children.pop(pid)
            self._reaped(pid)
            if self._stopping:
                continue
            self.crashes.append((pid, status))
            logger.error("worker process %d exited unexpectedly (%s)", pid, _describe(status))
            if self._may_restart():
                try:
                    self._spawn(slot)
                except ServiceStartError as exc:
                    logger.error("could not restart worker process %d: %s", slot, exc)
            else:
                logger.error("not restarting worker %d: %d restarts in %g s already", slot, *self._budget())
        return bool(self._children)

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM every child, wait ``timeout`` (default ``drain_timeout``) plus a short grace for them to drain,
        kill the rest, reap all, and close the listening sockets."""
        self._stopping = True
        drain = self.drain_timeout if timeout is None else timeout
        for pid in self._children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + drain + _KILL_GRACE
        while self._children and time.monotonic() < deadline:
            for pid in list(self._children):
                if _try_reap(pid) is not None:
                    del self._children[pid]
                    self._reaped(pid)
            if self._children:
                time.sleep(0.02)
        for pid in list(self._children):
            logger.warning("worker process %d did not stop within %g s; killed", pid, drain + _KILL_GRACE)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            del self._children[pid]
        self.reactor.stop(timeout=0.0)  # never started here: closes the parent's listening sockets

    def serve_forever(self) -> None:
        """Start, then supervise until SIGTERM/SIGINT (from the main thread) or until no child is left."""
        stop = threading.Event()
        previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():

            def on_signal(signum: int, _frame: FrameType | None) -> None:
                logger.info("signal %d: stopping the worker processes", signum)
                stop.set()

            previous = {int(sig): signal.signal(sig, on_signal) for sig in _SIGNALS}
        try:
            self.start()
            while not stop.wait(_POLL):
                if not self.poll():
                    logger.error("no worker process left; stopping")
                    break
        finally:
            self.stop()
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def __enter__(self) -> ProcessGroup:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- children -----------------------------------------------------------------------------------------------

    def _budget(self) -> tuple[int, float]:
        return self.max_restarts, self.restart_window

    def _may_restart(self) -> bool:
        now = time.monotonic()
        while self._restarts and now - self._restarts[0] > self.restart_window:
            self._restarts.popleft()
        if len(self._restarts) >= self.max_restarts:
            return False
        self._restarts.append(now)
        return True

    def _reaped(self, pid: int) -> None:
        if self.child_exited is not None:
            try:
                self.child_exited(pid)
            except Exception:
                logger.exception("child_exited(%d) failed; ignored", pid)

    def _spawn(self, slot: int) -> None:
        """Fork one child and wait for its report; raise :class:`ServiceStartError` if it does not serve."""
        read_fd, write_fd = os.pipe()
        # Signals stay blocked across the fork until the child has its own handlers: a SIGTERM cannot hit the
        # child while it still runs the parent's handlers.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child, which never returns from here
                os.close(read_fd)
                _child(self.reactor, write_fd, self.drain_timeout, blocked)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        os.close(write_fd)
        self._children[pid] = slot
        try:
            report = _read_report(read_fd, _READY_TIMEOUT)
        finally:
            os.close(read_fd)
        if report != _READY:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            del self._children[pid]
            reason = report.decode(errors="replace") or "it exited before it served"
            raise ServiceStartError(f"worker process {pid} did not start: {reason}")
        logger.info("worker process %d (slot %d) serving", pid, slot)


def _child(reactor: ServiceReactor, report_fd: int, drain_timeout: float, mask: set[int | signal.Signals]) -> None:
    """The child's whole life: start the reactor on the inherited sockets, serve until SIGTERM, drain, exit."""
    code = 1
    try:
        code = _serve_child(reactor, report_fd, drain_timeout, mask)
    except BaseException:
        logger.exception("worker process %d failed", os.getpid())
    finally:
        for handler in logging.getLogger().handlers:
            with contextlib.suppress(Exception):
                handler.flush()
        os._exit(code)


def _serve_child(reactor: ServiceReactor, report_fd: int, drain_timeout: float, mask: set[int | signal.Signals]) -> int:
    stop = threading.Event()
    parent = os.getppid()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    try:
        reactor.start()
    except Exception as exc:
        with contextlib.suppress(OSError):
            os.write(report_fd, f"{type(exc).__name__}: {exc}".encode()[:4000])
        return 1
    with contextlib.suppress(OSError):
        os.write(report_fd, _READY)
    os.close(report_fd)
    try:
        while not stop.wait(_POLL):
            if os.getppid() != parent:
                logger.warning("worker process %d: the parent went away; stopping", os.getpid())
                break
    finally:
        reactor.stop(timeout=drain_timeout)
    return 0


def _read_report(fd: int, timeout: float) -> bytes:
    """What the child wrote before closing its end (or before ``timeout``)."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    for _ in range(1000):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        chunks.append(chunk)
        if b"".join(chunks) == _READY:
            break
    return b"".join(chunks)


def _try_reap(pid: int) -> int | None:
    """The exit code of ``pid`` if it has exited (and is now reaped), else None."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return -1  # already reaped elsewhere
    if done == 0:
        return None
    return os.waitstatus_to_exitcode(status)


def _describe(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"signal {-code}"
    return f"exit status {code}"
