"""rpcframework: a secure RPC framework for Python, wire-compatible with DIRAC DISET.

The public API in one place::

    from rpcframework import Client, S_OK, S_ERROR, delegate

See ``docs/`` for the guides; the exception tree is drawn in :mod:`rpcframework.errors` and exported here.

Importing the package imports only the return values and the exceptions: the client, the server and the rest load on
first use (``rpcframework.Client`` imports the client), so a layer can be used on its own. ``import
rpcframework.protocol`` loads the sans-IO protocol and what it stands on, never a transport, client or server.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from rpcframework._version import __version__
from rpcframework.errors import (
    AuthorizationError,
    CodecError,
    CodecLimitError,
    ConfigurationError,
    ConnectError,
    ConnectionClosedError,
    CredentialsError,
    DeadlineExceeded,
    FrameError,
    FrameTooLargeError,
    HandshakeError,
    HandshakeTimeout,
    NameResolutionError,
    PeerSilent,
    PeerVerificationError,
    ProtocolError,
    RemoteError,
    RPCFrameworkError,
    SecurityError,
    ServiceOverloaded,
    TransportError,
    UnexpectedMessageError,
)
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

if TYPE_CHECKING:
    from rpcframework.client import Client, MockTransport, Retry, RPCClient, Timeout, TransferClient, executeRPCStub
    from rpcframework.security.delegation import ThreadConfig, current_delegation, delegate
    from rpcframework.server import RequestHandler, Service, ServiceReactor

#: Names loaded on first use, and the module each comes from.
_LAZY: dict[str, str] = {
    "Client": "rpcframework.client",
    "MockTransport": "rpcframework.client",
    "RPCClient": "rpcframework.client",
    "Retry": "rpcframework.client",
    "Timeout": "rpcframework.client",
    "TransferClient": "rpcframework.client",
    "executeRPCStub": "rpcframework.client",
    "ThreadConfig": "rpcframework.security.delegation",
    "current_delegation": "rpcframework.security.delegation",
    "delegate": "rpcframework.security.delegation",
    "RequestHandler": "rpcframework.server",
    "Service": "rpcframework.server",
    "ServiceReactor": "rpcframework.server",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rpcframework' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "S_ERROR",
    "S_OK",
    "AuthorizationError",
    "Client",
    "CodecError",
    "CodecLimitError",
    "ConfigurationError",
    "ConnectError",
    "ConnectionClosedError",
    "CredentialsError",
    "DErrorReturn",
    "DOKReturn",
    "DReturn",
    "DeadlineExceeded",
    "FrameError",
    "FrameTooLargeError",
    "HandshakeError",
    "HandshakeTimeout",
    "MockTransport",
    "NameResolutionError",
    "PeerSilent",
    "PeerVerificationError",
    "ProtocolError",
    "RPCClient",
    "RPCFrameworkError",
    "RemoteError",
    "RequestHandler",
    "Retry",
    "SErrorException",
    "SecurityError",
    "Service",
    "ServiceOverloaded",
    "ServiceReactor",
    "ThreadConfig",
    "Timeout",
    "TransferClient",
    "TransportError",
    "UnexpectedMessageError",
    "__version__",
    "current_delegation",
    "delegate",
    "executeRPCStub",
    "isReturnStructure",
    "isSError",
    "returnValueOrRaise",
]
