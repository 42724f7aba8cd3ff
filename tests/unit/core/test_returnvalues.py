"""S_OK/S_ERROR envelopes: DIRAC's shapes and message format, and the exception boundary."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rpcframework import S_ERROR, S_OK, isReturnStructure, returnValueOrRaise
from rpcframework.errors import (
    AuthorizationError,
    CodecLimitError,
    DeadlineExceeded,
    RemoteError,
    RPCFrameworkError,
)
from rpcframework.returnvalues import (
    ENOAUTH,
    SErrorException,
    error_from_exception,
    isSError,
    strerror,
)


def test_s_ok_shapes() -> None:
    assert S_OK() == {"OK": True, "Value": None}
    assert S_OK([1, "a"]) == {"OK": True, "Value": [1, "a"]}


def test_s_error_plain_message_has_errno_zero() -> None:
    assert S_ERROR("Unknown method nosuch") == {"OK": False, "Errno": 0, "Message": "Unknown method nosuch"}


def test_s_error_with_dirac_errno_matches_the_wire_capture() -> None:
    # error-replies.txt: "Unauthorized query ( 1111 : Unauthorized query)"
    result = S_ERROR(ENOAUTH, "Unauthorized query")
    assert result == {"OK": False, "Errno": 1111, "Message": "Unauthorized query ( 1111 : Unauthorized query)"}


def test_s_error_with_os_errno_uses_strerror() -> None:
    result = S_ERROR(errno.ENOENT, "no such thing")
    assert result["Message"] == f"{strerror(errno.ENOENT)} ( {errno.ENOENT} : no such thing)"


def test_s_error_wrapping_keeps_errno_and_adds_context() -> None:
    inner = S_ERROR(ENOAUTH, "x")
    outer = S_ERROR(inner, "while calling")
    assert outer["Errno"] == ENOAUTH
    assert outer["Message"].startswith("while calling: ")


def test_no_callstack_is_ever_attached() -> None:
    assert "CallStack" not in S_ERROR("boom")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (S_OK(), True),
        (S_ERROR("x"), True),
        ({"OK": True}, False),
        ({"OK": False}, False),
        ({"OK": 1, "Value": 2}, False),
        ({"OK": False, "Message": 3}, False),
        ([], False),
        (None, False),
        ("OK", False),
    ],
)
def test_is_return_structure(value: object, expected: bool) -> None:
    assert isReturnStructure(value) is expected


def test_return_value_or_raise() -> None:
    assert returnValueOrRaise(S_OK(5)) == 5
    with pytest.raises(SErrorException) as info:
        returnValueOrRaise(S_ERROR(ENOAUTH, "nope"))
    assert info.value.errno == ENOAUTH
    assert isSError(info.value.result)
    with pytest.raises(TypeError, match="S_OK/S_ERROR"):
        returnValueOrRaise({"bad": 1})  # type: ignore[arg-type]


def test_error_from_exception_keeps_errno_and_hides_internals() -> None:
    assert error_from_exception(AuthorizationError("Unauthorized query"))["Errno"] == ENOAUTH
    assert error_from_exception(CodecLimitError("too deep"))["Message"] == "too deep"
    timeout = error_from_exception(DeadlineExceeded("call took longer than 5 s"))
    assert timeout["Errno"] == errno.ETIMEDOUT
    assert "Traceback" not in error_from_exception(ValueError("x"))["Message"]


def test_exception_tree() -> None:
    assert issubclass(DeadlineExceeded, TimeoutError)
    assert issubclass(DeadlineExceeded, RPCFrameworkError)
    remote = RemoteError(S_ERROR(ENOAUTH, "x"))
    assert remote.errno == ENOAUTH
    assert remote.result["OK"] is False


@given(st.text(), st.integers(min_value=0, max_value=200))
def test_s_error_always_builds_a_valid_envelope(message: str, code: int) -> None:
    result = S_ERROR(code, message) if code else S_ERROR(message)
    assert isReturnStructure(result)
    assert isinstance(result["Message"], str)
