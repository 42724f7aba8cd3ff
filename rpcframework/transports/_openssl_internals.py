"""The only place that reaches into pyOpenSSL's internals (its cffi binding and two private attributes).

pyOpenSSL's public ``recv``/``send`` wrappers cost about as much Python time per TLS record as the rest of an RPC
exchange, it has no accessor for ``SSL_session_reused``, and it cannot turn partial writes off. So the pyOpenSSL back
end calls a few OpenSSL functions through pyOpenSSL's own binding (``OpenSSL._util``) and uses ``Connection._ssl``,
``Connection._raise_ssl_error`` and ``Context._context``. Everything of that kind is here, and :func:`check` runs at
import: a pyOpenSSL release that moves any of it fails loudly, naming what is missing, instead of running slower or
wrong. ``pyproject.toml`` bounds pyOpenSSL to the releases on which ``tests/integration/transports/
test_openssl_internals.py`` has passed; raise the bound only after running it on the new release.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from OpenSSL import SSL

try:
    from OpenSSL._util import ffi, lib, no_zero_allocator
except ImportError as exc:  # pragma: no cover - only with an unsupported pyOpenSSL
    raise ImportError(
        f"this pyOpenSSL has no OpenSSL._util binding ({exc}); install a release within the bound in pyproject.toml"
    ) from exc

__all__ = [
    "SSL_ERROR_WANT_READ",
    "BIO_read",
    "BIO_write",
    "SSL_get_error",
    "SSL_pending",
    "SSL_read",
    "SSL_write",
    "alloc",
    "buffer",
    "check",
    "disable_partial_writes",
    "error_raiser",
    "from_buffer",
    "memory_bios",
    "release",
    "session_reused",
    "ssl_pointer",
]

#: The OpenSSL functions and constants used through pyOpenSSL's binding.
LIB_NAMES: Final = (
    "SSL_read",
    "SSL_write",
    "SSL_pending",
    "SSL_session_reused",
    "SSL_CTX_clear_mode",
    "SSL_MODE_ENABLE_PARTIAL_WRITE",
    "SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER",
    # The asyncio client's TLS over memory BIOs (transports/aio_tls.py).
    "BIO_read",
    "BIO_write",
    "SSL_get_error",
    "SSL_ERROR_WANT_READ",
)
#: The private attributes used on pyOpenSSL objects.
CONNECTION_ATTRIBUTES: Final = ("_ssl", "_raise_ssl_error", "_into_ssl", "_from_ssl")
CONTEXT_ATTRIBUTES: Final = ("_context",)


def check() -> None:
    """Raise ImportError naming every internal this module needs that the installed pyOpenSSL lacks."""
    missing = [f"OpenSSL._util.lib.{name}" for name in LIB_NAMES if not hasattr(lib, name)]
    missing += [f"OpenSSL._util.ffi.{name}" for name in ("buffer", "from_buffer", "release") if not hasattr(ffi, name)]
    ctx = SSL.Context(SSL.TLS_METHOD)
    missing += [f"SSL.Context.{name}" for name in CONTEXT_ATTRIBUTES if not hasattr(ctx, name)]
    conn = SSL.Connection(ctx, None)
    missing += [f"SSL.Connection.{name}" for name in CONNECTION_ATTRIBUTES if not hasattr(conn, name)]
    if missing:
        raise ImportError(
            "the installed pyOpenSSL changed internals rpcframework uses: "
            + ", ".join(missing)
            + "; install a release within the bound in pyproject.toml"
        )


check()

SSL_read: Final[Callable[[Any, Any, int], int]] = lib.SSL_read
SSL_write: Final[Callable[[Any, Any, int], int]] = lib.SSL_write
SSL_pending: Final[Callable[[Any], int]] = lib.SSL_pending
SSL_get_error: Final[Callable[[Any, int], int]] = lib.SSL_get_error
SSL_ERROR_WANT_READ: Final[int] = lib.SSL_ERROR_WANT_READ
BIO_read: Final[Callable[[Any, Any, int], int]] = lib.BIO_read
BIO_write: Final[Callable[[Any, Any, int], int]] = lib.BIO_write
alloc: Final[Callable[[str, int], Any]] = no_zero_allocator
buffer: Final[Callable[..., Any]] = ffi.buffer
from_buffer: Final[Callable[..., Any]] = ffi.from_buffer
#: Ends a ``from_buffer`` object's hold on the Python buffer at once (not when it is garbage collected).
release: Final[Callable[[Any], None]] = ffi.release


def ssl_pointer(conn: SSL.Connection) -> Any:
    """The connection's ``SSL*``."""
    return conn._ssl


def memory_bios(conn: SSL.Connection) -> tuple[Any, Any]:
    """The ``BIO*`` pair of a connection made without a socket: (what OpenSSL reads, what it writes)."""
    if conn._into_ssl is None or conn._from_ssl is None:
        raise ValueError("the connection has a socket, not memory BIOs")
    return conn._into_ssl, conn._from_ssl


def error_raiser(conn: SSL.Connection) -> Callable[[Any, int], None]:
    """pyOpenSSL's mapping of a failed OpenSSL call to its exceptions (WantReadError, ZeroReturnError...)."""
    raiser: Callable[[Any, int], None] = conn._raise_ssl_error
    return raiser


def session_reused(conn: SSL.Connection) -> bool:
    """Whether the handshake resumed an earlier TLS session (pyOpenSSL has no public accessor)."""
    return bool(lib.SSL_session_reused(conn._ssl))


def disable_partial_writes(ctx: SSL.Context) -> None:
    """One SSL_write sends the whole buffer (pyOpenSSL turns partial writes on: a 1 MiB chunk took 64 trips)."""
    lib.SSL_CTX_clear_mode(ctx._context, lib.SSL_MODE_ENABLE_PARTIAL_WRITE)
    ctx.set_mode(lib.SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER)
