"""Per-method concurrency limits: n means n (DIRAC's ThreadLimit allows n+1), and dispatch answers "overloaded"."""

from __future__ import annotations

import threading
from typing import Any, ClassVar

import pytest

from rpcframework.errors import ConfigurationError
from rpcframework.returnvalues import EOVERLOAD
from rpcframework.server import (
    DEFAULT_METHOD_LIMIT,
    S_OK,
    MethodLimiter,
    MethodOverloaded,
    RequestContext,
    RequestHandler,
    dispatch,
)


class Handler(RequestHandler):
    types_work: ClassVar[list[Any]] = []

    def export_work(self) -> Any:
        return S_OK("done")

    types_fail: ClassVar[list[Any]] = []

    def export_fail(self) -> Any:
        raise RuntimeError("boom")

    def transfer_toClient(self, file_id: Any, token: Any, helper: Any) -> Any:
        return S_OK()


def test_limit_of_n_admits_exactly_n() -> None:
    limiter = MethodLimiter({"RPC/work": 2})
    assert limiter.acquire("RPC/work")
    assert limiter.acquire("RPC/work")
    assert not limiter.acquire("RPC/work")
    limiter.release("RPC/work")
    assert limiter.acquire("RPC/work")


def test_unbalanced_release_is_an_error() -> None:
    limiter = MethodLimiter({"RPC/work": 1})
    with pytest.raises(ValueError):
        limiter.release("RPC/work")


def test_unlimited_keys() -> None:
    limiter = MethodLimiter({"RPC/work": None})
    assert limiter.limit("RPC/work") is None
    assert all(limiter.acquire("RPC/work") for _ in range(100))
    limiter.release("RPC/work")  # no semaphore: a no-op


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "3"])
def test_bad_limits(bad: Any) -> None:
    with pytest.raises(ConfigurationError):
        MethodLimiter({"RPC/work": bad})


def test_for_table_covers_methods_and_transfers() -> None:
    limiter = MethodLimiter.for_table(Handler.method_table(), {"RPC/work": 1}, default=DEFAULT_METHOD_LIMIT)
    assert limiter.limit("RPC/work") == 1
    assert limiter.limit("RPC/echo") == 15
    assert limiter.limit("FileTransfer/ToClient") == 15
    assert MethodLimiter.for_table(Handler.method_table()).limit("RPC/work") is None


def test_for_table_refuses_unknown_keys() -> None:
    with pytest.raises(ConfigurationError, match="RPC/wrok"):
        MethodLimiter.for_table(Handler.method_table(), {"RPC/wrok": 1})


def test_blocking_acquire_with_timeout() -> None:
    limiter = MethodLimiter({"RPC/work": 1})
    assert limiter.acquire("RPC/work")
    assert limiter.acquire("RPC/work", timeout=0.01) is False
    releaser = threading.Timer(0.05, limiter.release, args=("RPC/work",))
    releaser.start()
    assert limiter.acquire("RPC/work", timeout=5)
    releaser.join()


def test_slot_context_manager() -> None:
    limiter = MethodLimiter({"RPC/work": 1})
    with limiter.slot("RPC/work"):
        with pytest.raises(MethodOverloaded) as caught, limiter.slot("RPC/work"):
            pass
        assert caught.value.errno == EOVERLOAD
    with limiter.slot("RPC/work"):
        pass


def test_dispatch_answers_overloaded_without_waiting(context: RequestContext) -> None:
    limiter = MethodLimiter.for_table(Handler.method_table(), {"RPC/work": 1})
    assert dispatch(Handler, "work", [], None, context, limiter=limiter) == {"OK": True, "Value": "done"}
    assert limiter.acquire("RPC/work")  # dispatch released its slot; now occupy it
    result = dispatch(Handler, "work", [], None, context, limiter=limiter)
    assert result == {
        "OK": False,
        "Errno": EOVERLOAD,
        "Message": "Service overloaded ( 1601 : too many concurrent calls to RPC/work (limit 1); retry later)",
        "RetryAfter": 0.5,  # nothing ran: the client may retry after this delay
    }
    # other methods are not affected, and failing calls give their slot back
    assert dispatch(Handler, "echo", ["x"], None, context, limiter=limiter)["OK"] is True
    limiter.release("RPC/work")
    assert dispatch(Handler, "work", [1], None, context, limiter=limiter)["OK"] is False
    assert limiter.acquire("RPC/work")


def test_a_raising_handler_gives_its_slot_back(context: RequestContext) -> None:
    limiter = MethodLimiter.for_table(Handler.method_table(), {"RPC/fail": 1})
    for _ in range(3):
        assert dispatch(Handler, "fail", [], None, context, limiter=limiter)["Message"].startswith(
            "Server error while serving fail"
        )
    assert limiter.acquire("RPC/fail")
