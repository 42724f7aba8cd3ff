"""The pyOpenSSL internals the back end relies on (``rpcframework.transports._openssl_internals``): present on the
installed release, and doing what the back end needs, over a real TLS connection. A pyOpenSSL release that breaks
any of this must fail here, loudly, before ``pyproject.toml``'s upper bound on pyOpenSSL is raised."""

from __future__ import annotations

import importlib.metadata
import re
import socket
import threading
import tomllib
from pathlib import Path

import pytest
from OpenSSL import SSL

from rpcframework.transports import _openssl_internals as internals
from rpcframework.transports.base import get_backend

pytestmark = pytest.mark.timeout(60)


def _bound() -> tuple[str, str]:
    """The pyOpenSSL requirement in pyproject.toml: (lower, upper)."""
    pyproject = tomllib.loads((Path(__file__).resolve().parents[3] / "pyproject.toml").read_text())
    (spec,) = [r for r in pyproject["project"]["dependencies"] if r.lower().startswith("pyopenssl")]
    lower = re.search(r">=\s*([\d.]+)", spec)
    upper = re.search(r"<\s*([\d.]+)", spec)
    assert lower and upper, f"pyOpenSSL must be bounded above and below in pyproject.toml, not {spec!r}"
    return lower.group(1), upper.group(1)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def test_the_installed_pyopenssl_is_within_the_tested_bound():
    lower, upper = _bound()
    installed = _version(importlib.metadata.version("pyopenssl"))
    assert _version(lower) <= installed < _version(upper)


def test_every_internal_is_there():
    internals.check()  # raises ImportError naming what is missing
    for name in internals.LIB_NAMES:
        assert hasattr(internals.lib, name), name


def test_check_names_what_a_release_removed(monkeypatch):
    monkeypatch.delattr(internals.lib, "SSL_session_reused", raising=False)
    if hasattr(internals.lib, "SSL_session_reused"):
        pytest.skip("cffi lib attributes cannot be removed on this build")
    with pytest.raises(ImportError, match="SSL_session_reused"):
        internals.check()


def test_the_internals_work_on_a_real_connection(creds):
    """Direct reads and writes, session_reused and whole writes, through the stream that uses them."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    received: list[bytes] = []

    def serve() -> None:
        sock, _ = listener.accept()
        stream = get_backend("pyopenssl").wrap_server(sock, creds.server_tls(), handshake_timeout=10)
        stream.settimeout(10)
        data = b""
        while len(data) < 3 * 1024 * 1024:
            chunk = stream.recv(1 << 20)
            if not chunk:
                break
            data += chunk
        received.append(data)
        stream.send_all(b"done")
        stream.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = type(get_backend("pyopenssl"))()
    stream = client.connect("localhost", port, tls=creds.client_tls(), handshake_timeout=10)
    stream.settimeout(10)
    assert stream.session_reused is False  # type: ignore[attr-defined]
    payload = bytes(range(256)) * (3 * 4096)  # 3 MiB in one send_all: whole writes, moving buffers
    stream.send_all(payload)
    assert stream.recv(16) == b"done"
    stream.close()
    thread.join(10)
    listener.close()
    assert received == [payload]
    ctx = SSL.Context(SSL.TLS_METHOD)
    internals.disable_partial_writes(ctx)
    assert not ctx.set_mode(0) & internals.lib.SSL_MODE_ENABLE_PARTIAL_WRITE
