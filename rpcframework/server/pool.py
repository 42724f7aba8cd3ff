"""A bounded worker pool: ``MaxThreads`` threads fed by a queue of at most ``MaxWaitingPetitions`` tasks.

DISET queues connections without bound and then sleeps or drops while "throttled", which wedged services whose
threads were stuck (DIRAC PRs #5394, #5461, #8323, #8471). Here a full queue is an immediate, explicit answer:
:meth:`WorkerPool.submit` returns ``False`` at once and the reactor tells the caller the service is overloaded.
Nothing ever waits for room in the queue, so a wedged handler costs its own thread and its callers, not the
reactor.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Final

from rpcframework.protocol.messages import overload_error
from rpcframework.returnvalues import EOVERLOAD, S_ERROR, DErrorReturn

__all__ = ["WorkerPool"]

logger = logging.getLogger(__name__)

Task = Callable[[], None]
_STOP: Final = None
#: The delay suggested to a caller refused because the queue is full: this much per queued task per thread (at
#: least once), at most :data:`_MAX_RETRY_AFTER`. Clients add their own jitter.
_RETRY_AFTER_PER_QUEUE: Final = 0.5
_MAX_RETRY_AFTER: Final = 5.0


class WorkerPool:
    """``max_threads`` daemon threads named ``<name>-<n>`` running tasks from a bounded queue."""

    def __init__(self, name: str, max_threads: int, max_waiting: int) -> None:
        if max_threads < 1 or max_waiting < 1:
            raise ValueError("a worker pool needs at least one thread and one queue slot")
        self.name = name
        self.max_threads = max_threads
        self._queue: queue.Queue[Task | None] = queue.Queue(maxsize=max_waiting)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._busy = 0
        self._idle = threading.Condition(self._lock)
        self._accepting = False

    @property
    def busy(self) -> int:
        """Tasks running now."""
        return self._busy

    @property
    def waiting(self) -> int:
        """Tasks queued and not started yet."""
        # len() of the queue's deque is atomic: no lock round per call (qsize() takes the queue's mutex).
        return len(self._queue.queue)

    def overload_error(self, text: str) -> DErrorReturn:
        """The refusal of a task that found the queue full (nothing ran), with the delay we suggest before a retry."""
        queued_per_thread = self.waiting / max(self.max_threads, 1)
        delay = min(_MAX_RETRY_AFTER, _RETRY_AFTER_PER_QUEUE * max(1.0, queued_per_thread))
        return overload_error(S_ERROR(EOVERLOAD, text), delay)

    def start(self) -> None:
        with self._lock:
            if self._threads:
                return
            self._accepting = True
            for number in range(self.max_threads):
                thread = threading.Thread(target=self._run, name=f"{self.name}-{number}", daemon=True)
                self._threads.append(thread)
                thread.start()

    def submit(self, task: Task) -> bool:
        """Queue ``task``; ``False`` at once when the queue is full or the pool is stopping."""
        if not self._accepting:
            return False
        try:
            self._queue.put_nowait(task)
        except queue.Full:
            return False
        return True

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no task runs or waits (``True``), or ``timeout`` seconds pass (``False``)."""
        end = time.monotonic() + timeout
        with self._idle:
            # unfinished_tasks counts queued and running tasks alike (task_done() follows each task).
            while self._queue.unfinished_tasks:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.05))
        return True

    def stop(self, timeout: float) -> None:
        """Refuse new tasks, let queued and running ones finish within ``timeout``, then let the threads exit."""
        self._accepting = False
        self.wait_idle(timeout)
        for _ in self._threads:
            try:
                self._queue.put_nowait(_STOP)
            except queue.Full:
                break  # stuck tasks: the threads are daemons and the process may exit anyway
        end = time.monotonic() + max(timeout, 0.1)
        for thread in self._threads:
            thread.join(max(end - time.monotonic(), 0.0))
        alive = sum(thread.is_alive() for thread in self._threads)
        if alive:
            logger.warning("%s: %d worker thread(s) still busy after %.1f s", self.name, alive, timeout)

    def _run(self) -> None:
        while True:
            task = self._queue.get()
            if task is _STOP:
                return
            with self._lock:
                self._busy += 1
            try:
                task()
            except Exception:  # a task must never kill its worker; tasks log their own failures
                logger.exception("%s: unexpected failure in a worker task", self.name)
            finally:
                del task  # not kept until the next task: a finished connection's buffers go now
                self._queue.task_done()
                with self._lock:
                    self._busy -= 1
                    self._idle.notify_all()
