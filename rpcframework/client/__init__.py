"""rpcframework.client: the user-facing ``Client`` and the pure call policy (timeouts, retries, URL choice).

The connection-level parts (``RPCClient``, which holds the internal ``InnerRPCClient``, which holds the
``BaseClient`` and the connection pool) plug in behind :class:`~rpcframework.client.interfaces.CallTarget`;
``MockTransport`` answers calls in-process for tests. See ``docs/client.md`` and the client section of
``docs/architecture.md``.
"""

from __future__ import annotations

from rpcframework.client.client import CallView, Client, RemoteMethod, executeRPCStub
from rpcframework.client.interfaces import CallTarget, Transport
from rpcframework.client.mock import MockCall, MockTransport
from rpcframework.client.options import UnknownOptionError
from rpcframework.client.policy import Retry, RetryEvent, Timeout
from rpcframework.client.rpcclient import RPCClient
from rpcframework.client.stub import RPCStub
from rpcframework.client.transfer import TransferClient

# The layers behind these (BaseClient, InnerRPCClient, the pool, URL selection, option parsing) are internal: import
# them from their modules (rpcframework.client.base, .inner, .pool, .selection, .options) when you must.
__all__ = [
    "CallTarget",
    "CallView",
    "Client",
    "MockCall",
    "MockTransport",
    "RPCClient",
    "RPCStub",
    "RemoteMethod",
    "Retry",
    "RetryEvent",
    "Timeout",
    "TransferClient",
    "Transport",
    "UnknownOptionError",
    "executeRPCStub",
]
