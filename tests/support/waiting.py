"""Waiting without sleeping for a fixed time: poll a condition until it holds, within a bounded deadline.

A test that waits for another thread, process or the server uses :func:`wait_for` or :func:`poll` (or an
``Event``/``Condition`` of its own); it never sleeps "long enough". The deadline is generous because the machine is
shared: it bounds a test that would otherwise hang, it is not a speed requirement.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: How long a wait may take before the test fails; generous, because other test runs share the machine.
DEFAULT_TIMEOUT = 10.0
_FIRST_INTERVAL = 0.002
_MAX_INTERVAL = 0.05


def poll(observe: Callable[[], T], until: Callable[[T], object], timeout: float = DEFAULT_TIMEOUT) -> T:
    """The first value of ``observe()`` for which ``until(value)`` is true, or the last one seen once ``timeout``
    has passed: the caller asserts on it, which says more than "timed out" would."""
    deadline = time.monotonic() + timeout
    interval = _FIRST_INTERVAL
    value = observe()
    while not until(value) and time.monotonic() < deadline:
        time.sleep(interval)  # a poll, not a guess: the loop ends as soon as the value is right
        interval = min(interval * 2, _MAX_INTERVAL)
        value = observe()
    return value


def wait_for(condition: Callable[[], object], timeout: float = DEFAULT_TIMEOUT, message: str = "") -> bool:
    """Return ``True`` as soon as ``condition()`` is true; fail the test if it is still false after ``timeout``.

    Returns a value so that ``assert wait_for(...)`` reads naturally; it never returns ``False``.
    """
    if not poll(condition, bool, timeout):
        raise AssertionError(message or f"still false after {timeout} s: {_describe(condition)}")
    return True


def _describe(condition: Callable[[], object]) -> str:
    code = getattr(condition, "__code__", None)
    if code is None:
        return repr(condition)
    return f"{code.co_name} ({code.co_filename.rsplit('/', 1)[-1]}:{code.co_firstlineno})"


class Gate:
    """Holds handler calls until the test opens it, and tells the test when they have started.

    A handler calls :meth:`enter` (counted, then blocked until :meth:`open`, at most ``hold_limit`` seconds);
    the test calls :meth:`wait_entered` to know the calls are really running, instead of sleeping.
    """

    def __init__(self, hold_limit: float = 30.0) -> None:
        self.hold_limit = hold_limit
        self._condition = threading.Condition()
        self.entered = 0
        self._open = False

    def reset(self) -> None:
        with self._condition:
            self.entered = 0
            self._open = False

    def enter(self) -> bool:
        """Count this call and wait for :meth:`open`; ``False`` if ``hold_limit`` passed first."""
        with self._condition:
            self.entered += 1
            self._condition.notify_all()
            return self._condition.wait_for(lambda: self._open, self.hold_limit)

    def wait_entered(self, count: int = 1, timeout: float = DEFAULT_TIMEOUT) -> None:
        with self._condition:
            if not self._condition.wait_for(lambda: self.entered >= count, timeout):
                raise AssertionError(f"{self.entered} of {count} calls entered the gate in {timeout} s")

    def open(self) -> None:
        with self._condition:
            self._open = True
            self._condition.notify_all()


async def wait_for_async(condition: Callable[[], object], timeout: float = DEFAULT_TIMEOUT, message: str = "") -> bool:
    """:func:`wait_for` inside an event loop: the loop runs the other tasks between two looks."""
    deadline = time.monotonic() + timeout
    interval = _FIRST_INTERVAL
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(message or f"still false after {timeout} s: {_describe(condition)}")
        await asyncio.sleep(interval)  # a poll, not a guess
        interval = min(interval * 2, _MAX_INTERVAL)
    return True
