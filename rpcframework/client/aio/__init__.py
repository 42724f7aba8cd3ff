"""The asyncio client: ``AsyncClient`` (and ``AsyncRPCClient`` under it), native asyncio I/O over the same sans-IO
protocol machines and the same policy objects as the blocking ``Client``. See ``docs/client.md``, "asyncio"."""

from __future__ import annotations

from rpcframework.client.aio.client import AsyncCallView, AsyncClient, AsyncRemoteMethod, executeRPCStubAsync
from rpcframework.client.aio.interfaces import AsyncCallTarget
from rpcframework.client.aio.pool import AsyncConnectionPool, AsyncPoolSettings
from rpcframework.client.aio.rpcclient import AsyncRPCClient
from rpcframework.client.aio.transfer import AsyncTransferClient

__all__ = [
    "AsyncCallTarget",
    "AsyncCallView",
    "AsyncClient",
    "AsyncConnectionPool",
    "AsyncPoolSettings",
    "AsyncRPCClient",
    "AsyncRemoteMethod",
    "AsyncTransferClient",
    "executeRPCStubAsync",
]
