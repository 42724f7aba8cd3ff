"""Running one function on many threads at once, for the thread-safety tests."""

from __future__ import annotations

import threading
from collections.abc import Callable


def run_concurrently(worker: Callable[[int], None], count: int, timeout: float = 30.0) -> list[BaseException]:
    """Run ``worker(0)`` .. ``worker(count - 1)`` on ``count`` threads released together (a barrier), wait for all
    of them (``timeout`` in all) and return what they raised; a thread still running is an error too."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(index: int) -> None:
        try:
            barrier.wait(timeout)
            worker(index)
        except BaseException as exc:  # reported to the test
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=run, args=(index,), daemon=True) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    stuck = sum(thread.is_alive() for thread in threads)
    if stuck:
        errors.append(TimeoutError(f"{stuck} of {count} threads still running after {timeout} s"))
    return errors
