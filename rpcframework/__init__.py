"""rpcframework: a secure RPC framework for Python, wire-compatible with DIRAC DISET."""

from __future__ import annotations

from rpcframework.returnvalues import (
    S_ERROR,
    S_OK,
    DErrorReturn,
    DOKReturn,
    DReturn,
    isReturnStructure,
    returnValueOrRaise,
)

__version__ = "0.1.0"

__all__ = [
    "S_ERROR",
    "S_OK",
    "DErrorReturn",
    "DOKReturn",
    "DReturn",
    "__version__",
    "isReturnStructure",
    "returnValueOrRaise",
]
