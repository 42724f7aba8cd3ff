"""The seam between :class:`~rpcframework.client.aio.AsyncClient` and what performs its calls.

An :class:`AsyncCallTarget` is :class:`~rpcframework.client.interfaces.CallTarget` with an ``async`` ``call``:
the networking :class:`~rpcframework.client.aio.AsyncRPCClient` implements it, and so can a test double. An
``AsyncClient`` also accepts a blocking ``CallTarget`` (``MockTransport``'s, for example): its ``call`` is run
inline on the event loop, so it must not block on I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, TypeAlias, runtime_checkable

from rpcframework.client.interfaces import CallTarget
from rpcframework.returnvalues import DReturn

__all__ = ["AnyTarget", "AsyncCallTarget"]


@runtime_checkable
class AsyncCallTarget(Protocol):
    """Performs remote calls on one service from asyncio code; same contract as ``CallTarget.call``."""

    async def call(
        self, method: str, args: tuple[Any, ...], kwargs: Mapping[str, Any], *, timeout: float | None
    ) -> DReturn: ...


#: What an ``AsyncClient`` can send a call to.
AnyTarget: TypeAlias = AsyncCallTarget | CallTarget
