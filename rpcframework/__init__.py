"""rpcframework: a secure RPC framework for Python, wire-compatible with DIRAC DISET.

The public API in one place::

    from rpcframework import Client, S_OK, S_ERROR, delegate

See ``docs/`` for the guides; the exception tree is drawn in :mod:`rpcframework.errors`.
"""

from __future__ import annotations

from rpcframework.client import Client, MockTransport, Retry, RPCClient, Timeout, TransferClient, executeRPCStub
from rpcframework.returnvalues import (
    S_ERROR,
    S_OK,
    DErrorReturn,
    DOKReturn,
    DReturn,
    SErrorException,
    isReturnStructure,
    isSError,
    returnValueOrRaise,
)
from rpcframework.security.delegation import ThreadConfig, current_delegation, delegate
from rpcframework.server import RequestHandler, Service, ServiceReactor

__version__ = "0.1.0"

__all__ = [
    "S_ERROR",
    "S_OK",
    "Client",
    "DErrorReturn",
    "DOKReturn",
    "DReturn",
    "MockTransport",
    "RPCClient",
    "RequestHandler",
    "Retry",
    "SErrorException",
    "Service",
    "ServiceReactor",
    "ThreadConfig",
    "Timeout",
    "TransferClient",
    "__version__",
    "current_delegation",
    "delegate",
    "executeRPCStub",
    "isReturnStructure",
    "isSError",
    "returnValueOrRaise",
]
