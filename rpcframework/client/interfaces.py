"""The narrow seams between the user-facing :class:`~rpcframework.client.client.Client` and the networking code.

``Client`` never talks to a socket. It hands every call to a :class:`CallTarget`, an object bound to one service
that performs one call and returns the envelope. The networking ``RPCClient`` implements it (URL selection, retries,
the DISET exchange); tests and the public ``MockTransport`` implement it without any I/O.

Where targets come from, in order:

1. the per-call setting ``rpc=`` (DIRAC code passes a prebuilt client this way): used for that call only;
2. the constructor argument ``Client(transport=...)``: either a :class:`CallTarget`, used for every service the
   client calls, or a :class:`Transport`, asked once per service for a target (``open_target``);
3. otherwise ``Client._make_rpc(service)``, which builds the networking ``RPCClient``.

Targets are built once per service and reused; ``Client.close()`` closes the ones it opened.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from rpcframework.returnvalues import DReturn

if TYPE_CHECKING:
    from rpcframework.client.options import ClientOptions


@runtime_checkable
class CallTarget(Protocol):
    """Performs remote calls on one service.

    ``args`` are the positional arguments, ``kwargs`` the remote keyword arguments (empty for DISET peers, which
    only take positional arguments: a target must refuse non-empty ``kwargs`` with ``S_ERROR`` or an
    :class:`~rpcframework.errors.RPCFrameworkError` when the peer did not negotiate keyword arguments).
    ``timeout`` is the deadline for the whole call in seconds, ``None`` for none.

    Return the peer's envelope (``S_OK``/``S_ERROR``) or raise an :class:`~rpcframework.errors.RPCFrameworkError`;
    the client turns such exceptions into ``S_ERROR`` and adds ``rpcStub``. Other exceptions are bugs and propagate.
    """

    def call(
        self, method: str, args: tuple[Any, ...], kwargs: Mapping[str, Any], *, timeout: float | None
    ) -> DReturn: ...


@runtime_checkable
class ClosableTarget(CallTarget, Protocol):
    """A target that holds resources (connections) to release."""

    def close(self) -> None: ...


@runtime_checkable
class Transport(Protocol):
    """Opens a :class:`CallTarget` for a service (``"System/Component"`` or a full URL) with the client's options."""

    def open_target(self, service: str, options: ClientOptions) -> CallTarget: ...
