"""Plain TCP (``dip://``), and the TCP connect every TLS back end starts from."""

from __future__ import annotations

import contextlib
import logging
import socket
from typing import TYPE_CHECKING

from rpcframework.deadline import Deadline
from rpcframework.errors import (
    ConfigurationError,
    ConnectError,
    DeadlineExceeded,
    NameResolutionError,
)
from rpcframework.transports.base import DEFAULT_KEEPALIVE, HandshakeStatus, TLSConfig, connection_lost

if TYPE_CHECKING:
    from rpcframework.security.x509 import PeerIdentity

__all__ = [
    "ConnectTimeout",
    "PlainBackend",
    "PlainServerHandshake",
    "PlainStream",
    "close_after_failure",
    "drain_before_close",
    "name_resolution_error",
    "open_tcp_connection",
    "peer_address_of",
    "tune_socket",
]

logger = logging.getLogger(__name__)


def tune_socket(sock: socket.socket, keepalive: float | None = DEFAULT_KEEPALIVE) -> None:
    """Small RPC messages must leave at once (no Nagle delay); keepalive notices peers that vanished.

    ``keepalive`` (seconds, ``None``: the system's defaults) bounds how long the connection may go without any
    acknowledgement from the peer: probes start after a third of it of silence and repeat every sixth, and
    TCP_USER_TIMEOUT ends the connection when that long passes with probes or sent data unanswered. A busy peer
    answers probes from its kernel, so a long call is never cut; a dead or cut-off host is noticed in about
    ``keepalive`` seconds, and the waiting read fails with ETIMEDOUT (:func:`~rpcframework.transports.base.
    connection_lost` makes it :class:`~rpcframework.errors.PeerSilent`).
    """
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if keepalive is not None:
            _keepalive_limits(sock, keepalive)
    except OSError as exc:  # a socket already reset by the peer; the next I/O reports it properly
        logger.debug("could not set socket options: %s", exc)


def _keepalive_limits(sock: socket.socket, keepalive: float) -> None:
    idle = max(1, int(keepalive / 3))
    interval = max(1, int(keepalive / 6))
    # Not every platform has every option (macOS: no TCP_KEEPIDLE, no TCP_USER_TIMEOUT): set what exists.
    for name, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", interval), ("TCP_KEEPCNT", 3)):
        option = getattr(socket, name, None)
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)
    user_timeout = getattr(socket, "TCP_USER_TIMEOUT", None)
    if user_timeout is not None:
        sock.setsockopt(socket.IPPROTO_TCP, user_timeout, max(1, int(keepalive * 1000)))


def close_after_failure(sock: socket.socket) -> None:
    """Close a socket whose handshake failed so the peer still reads our TLS alert."""
    drain_before_close(sock)
    sock.close()


def drain_before_close(sock: socket.socket) -> None:
    """Send FIN and drop what the peer already sent, so that closing does not answer with RST.

    Closing with unread bytes in the receive buffer makes the kernel send RST, and an RST makes the peer discard the
    alert it has not read yet. Under TLS 1.3 a client has usually sent its first request by the time we refuse its
    certificate. Never waits for more data.
    """
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
        sock.setblocking(False)
        for _ in range(16):
            if not sock.recv(65536):
                break


def peer_address_of(sock: socket.socket) -> tuple[str, int]:
    """``(host, port)`` of the peer, for IPv4 and IPv6 alike; ``("", 0)`` if the socket is no longer connected."""
    try:
        address = sock.getpeername()
    except OSError:
        return ("", 0)
    return (str(address[0]), int(address[1]))


class ConnectTimeout(DeadlineExceeded):
    """The TCP connect itself timed out (so a :class:`DeadlineExceeded` from a back end's ``connect`` that is not
    this one happened during the TLS handshake)."""


def name_resolution_error(host: str, exc: socket.gaierror | UnicodeError) -> NameResolutionError:
    """What a host name that does not resolve is reported as."""
    reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
    return NameResolutionError(
        f"cannot resolve the host name {host!r} ({reason}): check the host in the URL or the configuration, "
        "and that this machine's DNS knows it"
    )


def open_tcp_connection(
    host: str, port: int, timeout: float | None, keepalive: float | None = DEFAULT_KEEPALIVE
) -> socket.socket:
    """Connect to every address ``host`` resolves to, in order, within ``timeout`` seconds in total.

    The returned socket is in blocking mode (the caller sets its own timeouts) with TCP_NODELAY and SO_KEEPALIVE
    (``keepalive``: see :func:`tune_socket`).
    A name that does not resolve raises :class:`NameResolutionError`; a connect that times out,
    :class:`ConnectTimeout`.
    """
    deadline = Deadline.within(timeout)
    target = f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:  # UnicodeError: a label IDNA cannot encode (too long, empty)
        raise name_resolution_error(host, exc) from exc
    errors: list[str] = []
    for family, kind, proto, _name, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(deadline.time_left(f"connecting to {target}"))
            sock.connect(address)
        except DeadlineExceeded as exc:
            sock.close()
            raise ConnectTimeout(str(exc)) from exc
        except TimeoutError as exc:
            sock.close()
            raise ConnectTimeout(f"connecting to {target} timed out after {timeout:g} s") from exc
        except OSError as exc:
            sock.close()
            errors.append(f"{address[0]}: {exc.strerror or exc}")
            continue
        sock.settimeout(None)
        tune_socket(sock, keepalive)
        return sock
    raise ConnectError(f"cannot connect to {target} ({'; '.join(errors) or 'no address'})")


class PlainStream:
    """A TCP socket behind the :class:`~rpcframework.transports.base.Stream` interface."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._peer = peer_address_of(sock)

    def __repr__(self) -> str:
        return f"<PlainStream peer={self._peer[0]}:{self._peer[1]} fd={self.fileno()}>"

    @property
    def peer_identity(self) -> PeerIdentity | None:
        return None

    @property
    def peer_address(self) -> tuple[str, int]:
        return self._peer

    def send_all(self, data: bytes | memoryview) -> None:
        try:
            self._sock.sendall(data)
        except (TimeoutError, BlockingIOError) as exc:  # BlockingIOError: settimeout(0), i.e. non-blocking
            raise DeadlineExceeded(f"sending to {self._peer[0]}:{self._peer[1]} timed out") from exc
        except OSError as exc:
            raise connection_lost(self._where, exc.errno, exc, sending=True) from exc

    @property
    def _where(self) -> str:
        return f"{self._peer[0]}:{self._peer[1]}"

    def recv(self, max_bytes: int) -> bytes:
        try:
            return self._sock.recv(max_bytes)
        except (TimeoutError, BlockingIOError) as exc:  # BlockingIOError: settimeout(0), i.e. non-blocking
            raise DeadlineExceeded(f"no data from {self._peer[0]}:{self._peer[1]} in time") from exc
        except OSError as exc:
            raise connection_lost(self._where, exc.errno, exc) from exc

    def recv_into(self, view: memoryview) -> int:
        try:
            return self._sock.recv_into(view)
        except (TimeoutError, BlockingIOError) as exc:
            raise DeadlineExceeded(f"no data from {self._peer[0]}:{self._peer[1]} in time") from exc
        except OSError as exc:
            raise connection_lost(self._where, exc.errno, exc) from exc

    def settimeout(self, seconds: float | None) -> None:
        self._sock.settimeout(seconds)

    def pending(self) -> int:
        return 0

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        with contextlib.suppress(OSError):  # already disconnected: nothing to flush
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()


class PlainBackend:
    """``dip://``: no TLS, no identity. Only for trusted networks and tests."""

    name = "plain"

    def __init__(self, **_tls_options: object) -> None:
        pass  # TLS options (reload_interval, session_reuse) mean nothing here; accepted so back ends can be swapped

    def connect(
        self,
        host: str,
        port: int,
        *,
        tls: TLSConfig | None = None,
        server_hostname: str | None = None,
        connect_timeout: float | None = 10.0,
        handshake_timeout: float | None = 10.0,
        keepalive: float | None = DEFAULT_KEEPALIVE,
    ) -> PlainStream:
        _refuse_tls(tls)
        return PlainStream(open_tcp_connection(host, port, connect_timeout, keepalive))

    def wrap_server(
        self, sock: socket.socket, tls: TLSConfig | None = None, *, handshake_timeout: float | None = 10.0
    ) -> PlainStream:
        if tls is not None:
            sock.close()
            _refuse_tls(tls)
        tune_socket(sock)
        sock.settimeout(None)
        return PlainStream(sock)

    def start_server_handshake(self, sock: socket.socket, tls: TLSConfig | None = None) -> PlainServerHandshake:
        return PlainServerHandshake(self.wrap_server(sock, tls))

    def prepare_server(self, tls: TLSConfig | None) -> None:
        _refuse_tls(tls)


class PlainServerHandshake:
    """There is nothing to negotiate on plain TCP: the first ``step()`` is already ``DONE``."""

    def __init__(self, stream: PlainStream) -> None:
        self._stream = stream

    def fileno(self) -> int:
        return self._stream.fileno()

    def step(self) -> HandshakeStatus:
        return HandshakeStatus.DONE

    def stream(self) -> PlainStream:
        return self._stream

    def close(self) -> None:
        self._stream.close()


def _refuse_tls(tls: TLSConfig | None) -> None:
    if tls is not None:
        raise ConfigurationError("the plain (dip://) back end cannot do TLS; use 'pyopenssl' or 'm2crypto' for dips://")
