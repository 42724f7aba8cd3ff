"""The ``S_OK``/``S_ERROR`` result envelope, DIRAC-compatible.

Every message on a DISET wire, and every result of the public API, is one of two dictionaries::

    {"OK": True, "Value": value}
    {"OK": False, "Message": str, "Errno": int}

Inside the framework we raise exceptions (see :mod:`rpcframework.errors`); this module is the one place where
an exception becomes an envelope (:func:`error_from_exception`) and an envelope becomes an exception
(:func:`returnValueOrRaise`). Unlike DIRAC we never attach a ``CallStack``: server internals stay on the server.

With an errno, DIRAC formats the message as ``"<strerror(errno)> ( <errno> : <message>)"``; we do the same so
that code parsing DIRAC messages keeps working (``S_ERROR(1111, "Unauthorized query")`` gives
``"Unauthorized query ( 1111 : Unauthorized query)"``).
"""

from __future__ import annotations

import errno as _errno
import os
from typing import Any, Final, Literal, NoReturn, NotRequired, TypedDict, TypeGuard, TypeVar

T = TypeVar("T")

#: DIRAC's own error numbers (``DErrno``) that travel on the wire, with their texts.
ENOAUTH: Final = 1111
EOVERLOAD: Final = 1601
EUPGRADE: Final = 1602
ETIMEOUT: Final = _errno.ETIMEDOUT

_DIRAC_STRERROR: Final[dict[int, str]] = {
    ENOAUTH: "Unauthorized query",
    EOVERLOAD: "Service overloaded",
    EUPGRADE: "Client upgrade required",
}


class DOKReturn(TypedDict):
    """A successful result: ``{"OK": True, "Value": ...}`` (clients add ``rpcStub``, see :class:`DErrorReturn`)."""

    OK: Literal[True]
    Value: Any
    rpcStub: NotRequired[Any]


class _DErrorBase(TypedDict):
    OK: Literal[False]
    Message: str
    Errno: int


class DErrorReturn(_DErrorBase, total=False):
    """A failed result: ``{"OK": False, "Message": ..., "Errno": ...}``.

    ``rpcStub`` is added by clients to every received result (DISET convention), so a caller can replay it.
    """

    rpcStub: Any


DReturn = DOKReturn | DErrorReturn


def strerror(code: int) -> str:
    """Return the text DIRAC prints for an error number (DIRAC's codes first, then the OS's)."""
    if code in _DIRAC_STRERROR:
        return _DIRAC_STRERROR[code]
    return os.strerror(code)


def S_OK(value: Any = None) -> DOKReturn:
    """Wrap ``value`` in a successful envelope."""
    return {"OK": True, "Value": value}


def S_ERROR(code: int | str | DErrorReturn = "", message: str = "") -> DErrorReturn:
    """Build a failed envelope, DIRAC style.

    ``S_ERROR("text")`` has ``Errno`` 0 and the text as message. ``S_ERROR(errno, "text")`` formats the message
    as DIRAC does. ``S_ERROR(previous_error, "context")`` keeps the errno of ``previous_error`` and prefixes
    its message with the context.
    """
    if isinstance(code, dict):
        previous = code
        text = f"{message}: {previous['Message']}" if message else previous["Message"]
        return {"OK": False, "Errno": int(previous.get("Errno", 0)), "Message": text}
    if isinstance(code, str):
        return {"OK": False, "Errno": 0, "Message": code}
    if code == 0:
        return {"OK": False, "Errno": 0, "Message": message}
    return {"OK": False, "Errno": int(code), "Message": f"{strerror(code)} ( {code} : {message})"}


def isReturnStructure(value: object) -> TypeGuard[DReturn]:
    """True when ``value`` is a well-formed envelope (``OK`` a bool with ``Value``, or with ``Message``)."""
    if not isinstance(value, dict):
        return False
    ok = value.get("OK")
    if ok is True:
        return "Value" in value
    if ok is False:
        return isinstance(value.get("Message"), str)
    return False


def isSError(value: object) -> TypeGuard[DErrorReturn]:
    """True when ``value`` is a failed envelope."""
    return isReturnStructure(value) and value["OK"] is False


class SErrorException(Exception):
    """An ``S_ERROR`` carried as an exception; raised by :func:`returnValueOrRaise`."""

    def __init__(self, result: DErrorReturn) -> None:
        super().__init__(result["Message"])
        self.result = result

    @property
    def errno(self) -> int:
        """The envelope's ``Errno`` (0 when it had none)."""
        return int(self.result.get("Errno", 0))

    @property
    def message(self) -> str:
        return self.result["Message"]


def _raise(result: DErrorReturn) -> NoReturn:
    raise SErrorException(result)


def returnValueOrRaise(result: DReturn) -> Any:
    """Return ``result["Value"]`` or raise :class:`SErrorException` for a failed envelope."""
    if not isReturnStructure(result):
        raise TypeError(f"expected an S_OK/S_ERROR envelope, got {type(result).__name__}")
    if result["OK"]:
        return result["Value"]
    _raise(result)


def error_from_exception(exc: BaseException) -> DErrorReturn:
    """Turn one of our exceptions into an envelope for a caller; no traceback, no internals."""
    from rpcframework.errors import RPCFrameworkError

    if isinstance(exc, SErrorException):
        return {"OK": False, "Errno": exc.errno, "Message": exc.message}
    if isinstance(exc, RPCFrameworkError):
        return S_ERROR(exc.errno, str(exc)) if exc.errno else S_ERROR(str(exc))
    return S_ERROR(f"{type(exc).__name__}: {exc}")
