"""The benchmark cases: for each, a server (run in its own process) and a client caller (run in another).

A server function binds 127.0.0.1 on an ephemeral port, sends its address (``"127.0.0.1:PORT"`` or a service URL)
through ``control`` and serves until the parent sends ``"stop"`` (or goes away). A client factory returns a
:class:`Caller` whose ``call()`` performs one measured operation and raises if the answer is wrong.

Raw floors (what any RPC layer on top can at best reach):

* ``raw_ssl_echo`` / ``raw_pyopenssl_echo`` / ``raw_tcp_echo``: 100-byte echo over one persistent connection
  (stdlib ``ssl``; rpcframework's pyOpenSSL stream, which is what ``dips://`` uses; plain TCP);
* ``raw_ssl_connect_echo`` / ``raw_pyopenssl_connect_echo``: TCP connect + full TLS handshake (client proxy
  verified, no session resumption) + one echo + close, per operation (stdlib ``ssl`` on both sides;
  rpcframework's pyOpenSSL back end on both sides with the client's session cache off, the floor of
  ``rpc_new_connection``);
* ``raw_pyopenssl_connect_resumed_echo``: the same with the back end's defaults, so every handshake after the
  first resumes the previous session (the floor for a like-for-like reading of ``rpc_new_connection``).

rpcframework cases (``Client`` -> ``ServiceReactor``, built-in ``echo`` with a 100-character string):

* ``rpc_reused``: ``dips://``, one client thread, the negotiated ``reuse`` extension keeps one connection;
* ``rpc_new_connection``: ``dips://`` with a pure DIRAC client (``RPCClient(offer=None)``: no extensions offered,
  so the server closes after each call, exactly as DIRAC does): connect + handshake + proposal + call per call,
  with the default TLS settings (so the handshake resumes the previous session);
* ``rpc_new_connection_full``: the same with the client's session cache off: a full handshake per call;
* ``rpc_plain_reused``: ``dip://`` (plain TCP), reused connection;
* ``rpc_reused_32`` / ``rpc_reused_32_procs``: 32 client threads, each with its own reused connection, against a
  one-process server / a ``ProcessGroup`` of 2 worker processes on one port.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, ClassVar

from benchmarks.common import Caller, Case, split_address, wait_for_stop
from benchmarks.raw_tls_echo import MESSAGE, read_exactly, stdlib_client_context, stdlib_server_context

__all__ = ["CASES", "Caller", "Case", "wait_for_stop"]

#: The rpc cases echo this 100-character string.
TEXT = MESSAGE.decode()
#: Bounds for the server loops (they also end when their process is stopped).
_MAX_ACCEPTS = 10_000_000
_MAX_ECHOES = 100_000_000
_split = split_address


# -- raw servers --------------------------------------------------------------------------------------------------


class _ServerWrapper:
    """Turns accepted sockets into (recv, send, close) for one kind of raw server; the TLS context (stdlib) or the
    back end and its context cache (pyOpenSSL) is built once, as a real server does."""

    def __init__(self, kind: str, ca: Path) -> None:
        self.kind = kind
        self._context = stdlib_server_context(ca) if kind == "stdlib" else None
        self._backend: Any = None
        self._tls: Any = None
        if kind not in ("tcp", "stdlib"):
            from rpcframework.transports import TLSConfig, get_backend

            self._backend = get_backend(kind)
            self._tls = TLSConfig(
                cert_file=str(ca / "hostcert.pem"), key_file=str(ca / "hostkey.pem"), ca_dir=str(ca / "certificates")
            )

    def wrap(
        self, sock: socket.socket
    ) -> tuple[Callable[[int], bytes], Callable[[bytes], object], Callable[[], object]]:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._context is not None:
            tls_sock = self._context.wrap_socket(sock, server_side=True)
            return tls_sock.recv, tls_sock.sendall, tls_sock.close
        if self._backend is not None:
            stream = self._backend.wrap_server(sock, self._tls)
            return stream.recv, stream.send_all, stream.close
        return sock.recv, sock.sendall, sock.close


def _echo_one(wrapper: _ServerWrapper, sock: socket.socket) -> None:
    """Handshake (if TLS) and echo 100-byte messages until the client closes."""
    try:
        recv, send, close = wrapper.wrap(sock)
    except Exception:  # a client that went away mid-handshake: serve the next one
        sock.close()
        return
    try:
        for _ in range(_MAX_ECHOES):
            data = read_exactly(recv, len(MESSAGE))
            if len(data) < len(MESSAGE):
                break
            send(data)
    except Exception as exc:  # a connection reset by a departing client ends that connection only
        logging.getLogger(__name__).debug("echo connection ended: %s", exc)
    finally:
        close()


def _echo_connections(kind: str, ca: Path, listener: socket.socket, threaded: bool) -> None:
    """Serve connections one after the other, or (``threaded``) each in its own thread, as a thread-per-connection
    server does (the concurrent cases)."""
    wrapper = _ServerWrapper(kind, ca)
    for _ in range(_MAX_ACCEPTS):
        sock, _ = listener.accept()
        if threaded:
            threading.Thread(target=_echo_one, args=(wrapper, sock), daemon=True).start()
        else:
            _echo_one(wrapper, sock)


def _raw_server(kind: str, *, threaded: bool = False) -> Callable[[Path, Connection], None]:
    def serve(ca: Path, control: Connection) -> None:
        listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        thread = threading.Thread(target=_echo_connections, args=(kind, ca, listener, threaded), daemon=True)
        thread.start()
        control.send(f"127.0.0.1:{listener.getsockname()[1]}")
        wait_for_stop(control)
        listener.close()

    return serve


# -- raw clients --------------------------------------------------------------------------------------------------


class _PersistentEcho:
    """One connection opened up front; ``call()`` is one 100-byte round trip."""

    def __init__(self, kind: str, ca: Path, address: str) -> None:
        host, port = _split(address)
        self._recv: Callable[[int], bytes]
        self._send: Callable[[bytes], object]
        self._close: Callable[[], object]
        if kind == "pyopenssl":
            from rpcframework.transports import TLSConfig, get_backend

            tls = TLSConfig(cert_file=str(ca / "proxy.pem"), ca_dir=str(ca / "certificates"))
            stream = get_backend(kind).connect(host, port, tls=tls, server_hostname="localhost")
            self._recv, self._send, self._close = stream.recv, stream.send_all, stream.close
            return
        sock = socket.create_connection((host, port), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if kind == "stdlib":
            tls_sock = stdlib_client_context(ca).wrap_socket(sock, server_hostname="localhost")
            self._recv, self._send, self._close = tls_sock.recv, tls_sock.sendall, tls_sock.close
        else:
            self._recv, self._send, self._close = sock.recv, sock.sendall, sock.close

    def call(self) -> None:
        self._send(MESSAGE)
        if read_exactly(self._recv, len(MESSAGE)) != MESSAGE:
            raise RuntimeError("echo mismatch")

    def close(self) -> None:
        self._close()


class _ConnectEcho:
    """``call()``: TCP connect, full TLS handshake (stdlib ssl), one 100-byte echo, close."""

    def __init__(self, ca: Path, address: str) -> None:
        self._address = _split(address)
        self._context = stdlib_client_context(ca)

    def call(self) -> None:
        sock = socket.create_connection(self._address, timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._context.wrap_socket(sock, server_hostname="localhost") as tls_sock:
            tls_sock.sendall(MESSAGE)
            if read_exactly(tls_sock.recv, len(MESSAGE)) != MESSAGE:
                raise RuntimeError("echo mismatch")

    def close(self) -> None:
        pass


class _PyOpenSSLConnectEcho:
    """``call()``: connect + handshake through rpcframework's pyOpenSSL back end, one 100-byte echo, close.

    One back-end instance for every call (its TLS context is built once), as an ``RPCClient`` does. ``resume``:
    the back end's default session cache, so each handshake after the first resumes; otherwise each is a full one."""

    def __init__(self, ca: Path, address: str, *, resume: bool = False) -> None:
        from rpcframework.transports import TLSConfig, get_backend

        self._host, self._port = _split(address)
        self._backend = get_backend("pyopenssl", session_reuse=resume)
        self._tls = TLSConfig(cert_file=str(ca / "proxy.pem"), ca_dir=str(ca / "certificates"))

    def call(self) -> None:
        stream = self._backend.connect(self._host, self._port, tls=self._tls, server_hostname="localhost")
        try:
            stream.settimeout(30)
            stream.send_all(MESSAGE)
            if read_exactly(stream.recv, len(MESSAGE)) != MESSAGE:
                raise RuntimeError("echo mismatch")
        finally:
            stream.close()

    def close(self) -> None:
        pass


# -- rpcframework -------------------------------------------------------------------------------------------------


def _handler_class() -> type[Any]:
    from rpcframework.server import RequestHandler

    class BenchHandler(RequestHandler):
        """The built-in ``echo`` (``types_echo = [str]``), open to any authenticated or plain caller."""

        auth_echo: ClassVar[list[str]] = ["all"]

    return BenchHandler


def server_observer(observe: str | None) -> Any:
    """The server's observer for a case: none, Prometheus metrics, or OpenTelemetry spans (an SDK provider that
    records every span and exports none, so the cost measured is ours and the SDK's, not an exporter's)."""
    if observe == "metrics":
        from rpcframework.observability.prometheus import PrometheusServerMetrics

        return PrometheusServerMetrics()
    if observe in ("tracing", "tracing_sampled"):
        from rpcframework.observability.tracing import OpenTelemetryServerTracing

        return OpenTelemetryServerTracing(_tracer_provider(observe))
    return None


def _tracer_provider(observe: str) -> Any:
    """An SDK provider without an exporter: every span sampled (``tracing``), or the sampling we advise for
    production (``tracing_sampled``: 1% of traces, parent-based, so the server follows the client's decision)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    if observe == "tracing_sampled":
        return TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.01)))
    return TracerProvider()


def client_observer(observe: str | None) -> Any:
    if observe == "metrics":
        from rpcframework.observability.prometheus import PrometheusClientMetrics

        return PrometheusClientMetrics()
    if observe in ("tracing", "tracing_sampled"):
        from rpcframework.observability.tracing import OpenTelemetryClientTracing

        return OpenTelemetryClientTracing(_tracer_provider(observe))
    return None


def _rpc_server(protocol: str, processes: int = 1, observe: str | None = None) -> Callable[[Path, Connection], None]:
    """``processes`` > 1: a ``ProcessGroup`` of that many forked worker processes on one port; ``observe``:
    ``"metrics"`` or ``"tracing"`` (see :func:`server_observer`)."""

    def serve(ca: Path, control: Connection) -> None:
        from rpcframework.server import ProcessGroup, Service, ServiceReactor
        from rpcframework.transports import TLSConfig

        logging.basicConfig(level=logging.WARNING)
        tls = TLSConfig(
            cert_file=str(ca / "hostcert.pem"), key_file=str(ca / "hostkey.pem"), ca_dir=str(ca / "certificates")
        )
        service = Service("Bench/Echo", _handler_class(), port=0, protocol=protocol)
        options: dict[str, Any] = {"host": "127.0.0.1", "tls": tls if protocol == "dips" else None}
        if observe is not None:
            options["observer"] = server_observer(observe)
        server = ProcessGroup([service], processes=processes, **options) if processes > 1 else None
        with server or ServiceReactor([service], **options) as running:
            control.send(running.url("Bench/Echo"))
            wait_for_stop(control)

    return serve


class _DiracTransport:
    """A ``Transport`` opening pure DIRAC clients: no extensions offered, so one connection per call.

    ``session_reuse``: their pyOpenSSL back end keeps the last TLS session per server and offers it on the next
    connection (the default); ``False`` makes every handshake a full one. One back end shared through
    ``RPCClient(backends=...)``, as one ``Client`` keeps it."""

    def __init__(self, *, session_reuse: bool = True) -> None:
        from rpcframework.transports import get_backend

        self.backends: dict[str, Any] = {"pyopenssl": get_backend("pyopenssl", session_reuse=session_reuse)}

    def open_target(self, service: str, options: Any) -> Any:
        from rpcframework.client import RPCClient

        return RPCClient(service, options, offer=None, backends=self.backends)


class _RPCEcho:
    """``call()``: ``client.echo(TEXT)`` through the public ``Client``, checked."""

    def __init__(
        self, ca: Path, url: str, *, dirac_mode: bool = False, session_reuse: bool = True, observe: str | None = None
    ) -> None:
        from rpcframework.client import Client
        from rpcframework.config import load_dict

        config = load_dict({"DIRAC": {"Security": {"CALocation": str(ca / "certificates")}}}, "<bench>")
        transport = _DiracTransport(session_reuse=session_reuse) if dirac_mode else None
        self._transport = transport
        self._ca, self._url = ca, url
        observer = client_observer(observe)
        extra = {} if observer is None else {"observer": observer}
        self._client = Client(url, transport=transport, proxyLocation=str(ca / "proxy.pem"), config=config, **extra)
        self._echo = self._client.echo

    def call(self) -> None:
        result = self._echo(TEXT)
        if not result["OK"] or result["Value"] != TEXT:
            raise RuntimeError(f"echo failed: {result.get('Message')}")

    def close(self) -> None:
        self._client.close()


class _CountingBackend:
    """A back end that counts the connections it opens and how many of them resumed a TLS session."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.connections = 0
        self.resumed = 0

    def connect(self, *args: Any, **kwargs: Any) -> Any:
        stream = self._inner.connect(*args, **kwargs)
        self.connections += 1
        self.resumed += bool(stream.session_reused)
        return stream

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _RPCNewConnectionEcho(_RPCEcho):
    """``rpc_new_connection``: a pure DIRAC client; :meth:`extras` counts how many of its connections resumed."""

    def __init__(self, ca: Path, url: str, *, session_reuse: bool = True) -> None:
        super().__init__(ca, url, dirac_mode=True, session_reuse=session_reuse)
        assert self._transport is not None
        self._counter = _CountingBackend(self._transport.backends["pyopenssl"])
        self._transport.backends["pyopenssl"] = self._counter

    def extras(self) -> dict[str, Any]:
        counter = self._counter
        return {
            "connections": counter.connections,
            "resumed_connections": counter.resumed,
            "session_resumed": counter.resumed > 0,
        }


_BASE_CASES = (
    Case(
        "raw_tcp_echo",
        "plain TCP, 100-byte echo, one persistent connection",
        None,
        _raw_server("tcp"),
        lambda ca, address: _PersistentEcho("tcp", ca, address),
    ),
    Case(
        "raw_ssl_echo",
        "stdlib ssl, 100-byte echo, one persistent connection",
        None,
        _raw_server("stdlib"),
        lambda ca, address: _PersistentEcho("stdlib", ca, address),
    ),
    Case(
        "raw_pyopenssl_echo",
        "rpcframework's pyOpenSSL stream, 100-byte echo, one persistent connection",
        None,
        _raw_server("pyopenssl"),
        lambda ca, address: _PersistentEcho("pyopenssl", ca, address),
    ),
    Case(
        "raw_ssl_connect_echo",
        "stdlib ssl: TCP connect + full handshake + one 100-byte echo + close, per operation",
        None,
        _raw_server("stdlib"),
        _ConnectEcho,
    ),
    Case(
        "raw_pyopenssl_connect_echo",
        "rpcframework's pyOpenSSL back end: connect + full handshake + one 100-byte echo + close, per operation",
        None,
        _raw_server("pyopenssl"),
        _PyOpenSSLConnectEcho,
    ),
    Case(
        "raw_pyopenssl_connect_resumed_echo",
        "raw_pyopenssl_connect_echo with the back end's default session cache: each handshake resumes",
        None,
        _raw_server("pyopenssl"),
        lambda ca, address: _PyOpenSSLConnectEcho(ca, address, resume=True),
    ),
    Case(
        "rpc_reused",
        "Client -> ServiceReactor echo(100 chars), dips:// (pyOpenSSL), one thread, reused connection",
        "raw_pyopenssl_echo",
        _rpc_server("dips"),
        _RPCEcho,
    ),
    Case(
        "rpc_reused_metrics",
        "rpc_reused with Prometheus metrics on both sides (server and client observers)",
        "rpc_reused",
        _rpc_server("dips", observe="metrics"),
        lambda ca, url: _RPCEcho(ca, url, observe="metrics"),
    ),
    Case(
        "rpc_reused_tracing",
        "rpc_reused with OpenTelemetry spans on both sides (SDK provider, no exporter), context sent per call",
        "rpc_reused",
        _rpc_server("dips", observe="tracing"),
        lambda ca, url: _RPCEcho(ca, url, observe="tracing"),
    ),
    Case(
        "rpc_reused_tracing_sampled",
        "rpc_reused_tracing with 1% of traces sampled (ParentBased(TraceIdRatioBased(0.01))), as advised in production",
        "rpc_reused",
        _rpc_server("dips", observe="tracing_sampled"),
        lambda ca, url: _RPCEcho(ca, url, observe="tracing_sampled"),
    ),
    Case(
        "rpc_new_connection",
        "same over a new dips:// connection per call (pure DIRAC client, no reuse offered), default TLS settings:"
        " the handshake resumes the previous session",
        "raw_pyopenssl_connect_echo",
        _rpc_server("dips"),
        _RPCNewConnectionEcho,
    ),
    Case(
        "rpc_new_connection_full",
        "rpc_new_connection with the client's session cache off (session_reuse=False): a full handshake per call",
        "raw_pyopenssl_connect_echo",
        _rpc_server("dips"),
        lambda ca, url: _RPCNewConnectionEcho(ca, url, session_reuse=False),
    ),
    Case(
        "rpc_plain_reused",
        "Client -> ServiceReactor echo(100 chars), dip:// (plain TCP), one thread, reused connection",
        "raw_tcp_echo",
        _rpc_server("dip"),
        _RPCEcho,
    ),
)

#: The concurrent cases: 32 client threads in one client process, each with its own connection (see
#: benchmarks/notes/where_the_time_goes.md for why one process).
_CONCURRENT_CASES = (
    Case(
        "raw_ssl_echo_32",
        "stdlib ssl, 100-byte echo, 32 client threads with a connection each; server: a thread per connection",
        None,
        _raw_server("stdlib", threaded=True),
        lambda ca, address: _PersistentEcho("stdlib", ca, address),
        threads=32,
    ),
    Case(
        "rpc_reused_32",
        "rpc_reused with 32 client threads, each with its own Client (so its own reused connection)",
        "raw_ssl_echo_32",
        _rpc_server("dips"),
        _RPCEcho,
        threads=32,
    ),
    Case(
        "rpc_reused_32_procs",
        "rpc_reused_32 against a server of 2 worker processes sharing the port (ProcessGroup, CloneProcesses = 2)",
        "raw_ssl_echo_32",
        _rpc_server("dips", processes=2),
        _RPCEcho,
        threads=32,
    ),
)


def _all_cases() -> dict[str, Case]:
    from benchmarks.aio_cases import AIO_CASES
    from benchmarks.grpc_cases import GRPC_CASES
    from benchmarks.idle_case import IDLE_CASES
    from benchmarks.peer_cases import PEER_CASES
    from benchmarks.transfer_cases import TRANSFER_CASES

    single = (*(case for case in GRPC_CASES if case.threads == 1), *PEER_CASES)
    concurrent = (*_CONCURRENT_CASES, *(case for case in GRPC_CASES if case.threads > 1))
    ordered = (*_BASE_CASES, *single, *concurrent, *AIO_CASES, *TRANSFER_CASES, *IDLE_CASES)
    return {case.name: case for case in ordered}


CASES: dict[str, Case] = _all_cases()
