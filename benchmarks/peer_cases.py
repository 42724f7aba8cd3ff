"""Other Python RPC libraries doing the same call: RPyC and Pyro5 over mutual TLS, a 100-character string echoed.

* ``rpyc_echo``: RPyC (classic ``rpyc.Service`` with ``exposed_echo``), ``ThreadedServer`` with its
  ``SSLAuthenticator`` (stdlib ``ssl``, client certificate required), the client's ``rpyc.ssl_connect``; the call
  is ``conn.root.echo`` looked up once, as our case looks ``client.echo`` up once;
* ``pyro5_echo``: Pyro5 ``Daemon`` (its default thread-pool server) with ``SSL = True`` and
  ``SSL_REQUIRECLIENTCERT``, one ``Proxy`` kept connected, default serializer (serpent).

Both use the dev CA's host certificate on each side (stdlib ``ssl`` does not take RFC 3820 proxies without a flag
these libraries do not set), as the gRPC cases do. One persistent connection per client thread.
"""

from __future__ import annotations

import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from benchmarks.common import Case, split_address, wait_for_stop
from benchmarks.raw_tls_echo import MESSAGE

__all__ = ["PEER_CASES"]

TEXT = MESSAGE.decode()
_TIMEOUT = 30.0


# -- RPyC ---------------------------------------------------------------------------------------------------------


def serve_rpyc(ca: Path, control: Connection) -> None:
    """An RPyC ``ThreadedServer`` (a thread per connection) with mutual TLS on 127.0.0.1."""
    import ssl

    import rpyc
    from rpyc.utils.authenticators import SSLAuthenticator
    from rpyc.utils.server import ThreadedServer

    class EchoService(rpyc.Service):  # type: ignore[misc]
        def exposed_echo(self, text: str) -> str:
            return text

    authenticator = SSLAuthenticator(
        str(ca / "hostkey.pem"),
        str(ca / "hostcert.pem"),
        ca_certs=str(ca / "ca" / "cacert.pem"),
        cert_reqs=ssl.CERT_REQUIRED,
    )
    server = ThreadedServer(
        EchoService,
        hostname="127.0.0.1",
        port=0,
        authenticator=authenticator,
        protocol_config={"sync_request_timeout": _TIMEOUT},
    )
    thread = threading.Thread(target=server.start, daemon=True)
    thread.start()
    try:
        control.send(f"127.0.0.1:{server.port}")
        wait_for_stop(control)
    finally:
        server.close()


class RPyCEcho:
    """``call()``: ``echo(TEXT)`` through one RPyC connection, checked."""

    def __init__(self, ca: Path, address: str) -> None:
        import rpyc

        host, port = split_address(address)
        self._conn = rpyc.ssl_connect(
            host,
            port,
            keyfile=str(ca / "hostkey.pem"),
            certfile=str(ca / "hostcert.pem"),
            ca_certs=str(ca / "ca" / "cacert.pem"),
            config={"sync_request_timeout": _TIMEOUT},
        )
        self._echo = self._conn.root.echo

    def call(self) -> None:
        if self._echo(TEXT) != TEXT:
            raise RuntimeError("echo mismatch")

    def close(self) -> None:
        self._conn.close()


# -- Pyro5 --------------------------------------------------------------------------------------------------------


def _pyro_tls(ca: Path, *, server: bool) -> None:
    from Pyro5 import config

    config.SSL = True
    config.SSL_CACERTS = str(ca / "ca" / "cacert.pem")
    config.COMMTIMEOUT = _TIMEOUT
    if server:
        config.SSL_SERVERCERT = str(ca / "hostcert.pem")
        config.SSL_SERVERKEY = str(ca / "hostkey.pem")
        config.SSL_REQUIRECLIENTCERT = True
    else:
        config.SSL_CLIENTCERT = str(ca / "hostcert.pem")
        config.SSL_CLIENTKEY = str(ca / "hostkey.pem")


def serve_pyro5(ca: Path, control: Connection) -> None:
    """A Pyro5 daemon (thread-pool server) with mutual TLS on 127.0.0.1."""
    _pyro_tls(ca, server=True)
    from Pyro5.api import Daemon, expose

    @expose
    class Echo:
        def echo(self, text: str) -> str:
            return text

    daemon = Daemon(host="localhost", port=0)
    uri = daemon.register(Echo, "bench.echo")
    thread = threading.Thread(target=daemon.requestLoop, daemon=True)
    thread.start()
    try:
        control.send(str(uri))
        wait_for_stop(control)
    finally:
        daemon.shutdown()


class Pyro5Echo:
    """``call()``: ``echo(TEXT)`` through one Pyro5 proxy (its connection kept), checked."""

    def __init__(self, ca: Path, uri: str) -> None:
        _pyro_tls(ca, server=False)
        from Pyro5.api import Proxy

        self._proxy: Any = Proxy(uri)
        self._proxy._pyroBind()

    def call(self) -> None:
        if self._proxy.echo(TEXT) != TEXT:
            raise RuntimeError("echo mismatch")

    def close(self) -> None:
        self._proxy._pyroRelease()


PEER_CASES = (
    Case(
        "rpyc_echo",
        "RPyC 6 ThreadedServer, mutual TLS (stdlib ssl, host certificates), echo(100 chars), one client connection",
        None,
        serve_rpyc,
        RPyCEcho,
    ),
    Case(
        "pyro5_echo",
        "Pyro5 daemon (thread pool), mutual TLS (stdlib ssl, host certificates), echo(100 chars), one proxy",
        None,
        serve_pyro5,
        Pyro5Echo,
    ),
)
