"""rpcframework.client: the user-facing ``Client`` and the pure call policy (timeouts, retries, URL choice).

The connection-level parts (``RPCClient``, ``InnerRPCClient``, ``BaseClient``, the pool) plug in behind
:class:`~rpcframework.client.interfaces.CallTarget`; ``MockTransport`` answers calls in-process for tests.
See ``docs/client.md``.
"""

from __future__ import annotations

from rpcframework.client.base import BaseClient
from rpcframework.client.client import CallView, Client, RemoteMethod, executeRPCStub
from rpcframework.client.inner import InnerRPCClient, KeywordArgumentsUnsupported
from rpcframework.client.interfaces import CallTarget, ClosableTarget, Transport
from rpcframework.client.mock import MockCall, MockTransport
from rpcframework.client.options import CALL_SETTING_NAMES, CallSettings, ClientOptions, UnknownOptionError
from rpcframework.client.policy import CallPhase, Deadline, Retry, RetryEvent, Timeout
from rpcframework.client.pool import ConnectionPool, PoolSettings
from rpcframework.client.rpcclient import RPCClient
from rpcframework.client.selection import AttemptPlan, URLSelector
from rpcframework.client.stub import RPCStub, build_rpc_stub, parse_rpc_stub
from rpcframework.client.transfer import TransferClient

__all__ = [
    "CALL_SETTING_NAMES",
    "AttemptPlan",
    "BaseClient",
    "CallPhase",
    "CallSettings",
    "CallTarget",
    "CallView",
    "Client",
    "ClientOptions",
    "ClosableTarget",
    "ConnectionPool",
    "Deadline",
    "InnerRPCClient",
    "KeywordArgumentsUnsupported",
    "MockCall",
    "MockTransport",
    "PoolSettings",
    "RPCClient",
    "RPCStub",
    "RemoteMethod",
    "Retry",
    "RetryEvent",
    "Timeout",
    "TransferClient",
    "Transport",
    "URLSelector",
    "UnknownOptionError",
    "build_rpc_stub",
    "executeRPCStub",
    "parse_rpc_stub",
]
