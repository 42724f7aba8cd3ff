"""What callers get from a server's reply: DIRAC's keys only, an integer Errno; and the overload mark."""

from __future__ import annotations

import math

import pytest

from rpcframework.client.replies import (
    normalize_errno,
    normalize_reply,
    overload_retry_after,
    refusal_error,
    result_or_overload,
)
from rpcframework.errors import RemoteError, ServiceOverloaded
from rpcframework.returnvalues import EOVERLOAD


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (5, 5),
        (-3, -3),
        ("1111", 1111),
        (" 42 ", 42),
        ("-7", -7),
        ("١٢", 0),  # non-ASCII digits are not an errno
        ("EPERM", 0),
        ("9" * 40, 0),
        (2.0, 2),
        (2.5, 0),
        (math.nan, 0),
        (math.inf, 0),
        (True, 0),
        (None, 0),
        ([1], 0),
        (2**40, 0),
    ],
)
def test_normalize_errno(value: object, expected: int) -> None:
    assert normalize_errno(value) == expected


def test_clean_replies_are_returned_as_they_are() -> None:
    ok = {"OK": True, "Value": [1]}
    error = {"OK": False, "Errno": 3, "Message": "m"}
    assert normalize_reply(ok) is ok  # type: ignore[arg-type]
    assert normalize_reply(error) is error  # type: ignore[arg-type]


def test_foreign_keys_are_dropped() -> None:
    reply = {"OK": False, "Message": "m", "Errno": "12", "CallStack": ["x"], "ExecInfo": 1, "rpcStub": "forged"}
    assert normalize_reply(reply) == {"OK": False, "Errno": 12, "Message": "m"}  # type: ignore[arg-type]
    assert normalize_reply({"OK": True, "Value": None, "x": 1}) == {"OK": True, "Value": None}  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [(1.5, 1.5), (0, 0.0), (-1, 0.0), (math.nan, 0.0), ("2", 0.0), (True, 0.0), (None, 0.0)],
)
def test_the_overload_mark_with_any_value_means_nothing_ran(retry_after: object, expected: float) -> None:
    reply = {"OK": False, "Errno": EOVERLOAD, "Message": "busy", "RetryAfter": retry_after}
    assert overload_retry_after(reply) == expected  # type: ignore[arg-type]
    with pytest.raises(ServiceOverloaded) as info:
        result_or_overload(reply)  # type: ignore[arg-type]
    assert info.value.retry_after == expected
    assert info.value.result == {"OK": False, "Errno": EOVERLOAD, "Message": "busy"}


def test_without_the_mark_an_overload_is_a_result_and_a_refusal_a_remote_error() -> None:
    plain = {"OK": False, "Errno": EOVERLOAD, "Message": "busy downstream"}
    assert overload_retry_after(plain) is None  # type: ignore[arg-type]
    assert result_or_overload(plain) == plain  # type: ignore[arg-type]
    assert overload_retry_after({"OK": False, "Errno": 5, "Message": "m", "RetryAfter": 1}) is None  # type: ignore[arg-type]
    refusal = refusal_error({"OK": False, "Errno": 1111, "Message": "no", "CallStack": ["x"]})  # type: ignore[arg-type]
    assert type(refusal) is RemoteError and refusal.result == {"OK": False, "Errno": 1111, "Message": "no"}
    marked = refusal_error({"OK": False, "Errno": EOVERLOAD, "Message": "busy", "RetryAfter": 2})  # type: ignore[arg-type]
    assert isinstance(marked, ServiceOverloaded) and marked.retry_after == 2.0
