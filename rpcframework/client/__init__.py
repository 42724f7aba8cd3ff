"""rpcframework.client: the user-facing ``Client`` and the pure call policy (timeouts, retries, URL choice).

The connection-level parts (``RPCClient``, ``InnerRPCClient``, the pool) plug in behind
:class:`~rpcframework.client.interfaces.CallTarget`; see ``docs/client.md``.
"""

from __future__ import annotations

from rpcframework.client.client import CallView, Client, RemoteMethod, executeRPCStub
from rpcframework.client.interfaces import CallTarget, ClosableTarget, Transport
from rpcframework.client.options import CALL_SETTING_NAMES, CallSettings, ClientOptions, UnknownOptionError
from rpcframework.client.policy import CallPhase, Deadline, Retry, RetryEvent, Timeout
from rpcframework.client.selection import AttemptPlan, URLSelector
from rpcframework.client.stub import RPCStub, build_rpc_stub, parse_rpc_stub

__all__ = [
    "CALL_SETTING_NAMES",
    "AttemptPlan",
    "CallPhase",
    "CallSettings",
    "CallTarget",
    "CallView",
    "Client",
    "ClientOptions",
    "ClosableTarget",
    "Deadline",
    "RPCStub",
    "RemoteMethod",
    "Retry",
    "RetryEvent",
    "Timeout",
    "Transport",
    "URLSelector",
    "UnknownOptionError",
    "build_rpc_stub",
    "executeRPCStub",
    "parse_rpc_stub",
]
