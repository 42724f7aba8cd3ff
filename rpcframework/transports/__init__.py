"""rpcframework.transports: the I/O seam (plain TCP, pyOpenSSL, M2Crypto) behind one stream interface.

Only :mod:`rpcframework.transports.base` is imported here; TLS libraries load when :func:`get_backend` asks for them.
"""

from __future__ import annotations

from rpcframework.transports.base import Backend, Stream, TLSConfig, get_backend

__all__ = ["Backend", "Stream", "TLSConfig", "get_backend"]
