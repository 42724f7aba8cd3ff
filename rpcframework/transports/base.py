"""The I/O seam: TLS settings, the stream and back-end protocols, and the error vocabulary they share.

Everything above this package (protocol drivers, client, server) sees only a :class:`Stream` and a
:class:`Backend`; which TLS library sits underneath is a keyword (:func:`get_backend`). Back ends translate every
library failure into :mod:`rpcframework.errors` here, so no ``OpenSSL.SSL.Error`` or ``M2Crypto.SSL.SSLError`` ever
crosses this package's boundary.
"""

from __future__ import annotations

import enum
import errno
import importlib.util
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from rpcframework.config.settings import MAX_SESSION_LIFETIME
from rpcframework.errors import (
    ConfigurationError,
    ConnectionClosedError,
    CredentialsError,
    HandshakeError,
    PeerSilent,
    PeerVerificationError,
    RPCFrameworkError,
    TransportError,
)
from rpcframework.security.keyfiles import check_key_file_mode

if TYPE_CHECKING:
    import socket

    from rpcframework.security.x509 import PeerIdentity

__all__ = [
    "DEFAULT_KEEPALIVE",
    "DEFAULT_TLS12_CIPHERS",
    "MAX_SESSION_LIFETIME",
    "Backend",
    "BackendName",
    "CrlMode",
    "HandshakeStatus",
    "ServerHandshake",
    "Stream",
    "TLSConfig",
    "TLSStreamInfo",
    "TLSVersion",
    "UnknownCAError",
    "check_resumed_identity",
    "classify_tls_failure",
    "connection_lost",
    "get_backend",
    "refuse_encrypted_key",
    "require_tls",
    "resolve_crl_mode",
    "store_flags",
    "verify_error_message",
]

logger = logging.getLogger(__name__)

CrlMode = Literal["auto", "off", "leaf", "chain"]
TLSVersion = Literal["TLSv1.2", "TLSv1.3"]
BackendName = Literal["plain", "pyopenssl", "m2crypto"]

# TLS 1.3 suites are all AEAD already; this list only governs TLS 1.2: forward-secret key exchange with AEAD
# ciphers, nothing else (no CBC, no static RSA, no anonymous suites).
DEFAULT_TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS:!SHA1"

_CRL_FILE = re.compile(r"^[0-9a-f]{8}\.r[0-9]+$")


#: Seconds an open connection may go without any acknowledgement from its peer (TCP keepalive probes while idle or
#: waiting for an answer, TCP_USER_TIMEOUT while sending) before it is declared dead: a host that is down or cut off
#: sends no reset, so without this a call waiting on it would wait for its whole deadline.
DEFAULT_KEEPALIVE = 30.0


@dataclass(frozen=True)
class TLSConfig:
    """What one side of a TLS connection presents and trusts.

    ``cert_file`` may be a proxy file holding certificate, key and chain together; then leave ``key_file`` unset.
    ``crl_mode``: ``"off"`` (DISET parity), ``"leaf"`` (the peer's own certificate only; a revoked user's
    *proxy* is still accepted), ``"chain"`` (every certificate in the chain; refuses revoked users' proxies, but
    every CA then needs a current CRL), ``"auto"`` (``"chain"`` when ``ca_dir`` holds any ``<hash>.r<N>``, else
    ``"off"``). ``verify_peer=False`` is DISET's ``skipCACheck`` and is refused on the server side.

    Server-side TLS session resumption: ``session_lifetime`` is how many seconds a client may resume a session
    (``0`` turns resumption off: every connection makes a full handshake); ``session_cache_size`` bounds how many
    full handshakes one context remembers before its session cache is dropped (about 14 KiB each).
    """

    cert_file: str | None = None
    key_file: str | None = None
    ca_dir: str | None = None
    ca_file: str | None = None
    crl_mode: CrlMode = "auto"
    verify_peer: bool = True
    min_version: TLSVersion = "TLSv1.2"
    allow_proxies: bool = True
    check_hostname: bool = True
    ciphers: str = DEFAULT_TLS12_CIPHERS
    verify_depth: int = 50
    session_lifetime: int = 300
    session_cache_size: int = 1024

    def __post_init__(self) -> None:
        if self.crl_mode not in ("auto", "off", "leaf", "chain"):
            raise ConfigurationError(f"crl_mode must be auto, off, leaf or chain, not {self.crl_mode!r}")
        if self.min_version not in ("TLSv1.2", "TLSv1.3"):
            raise ConfigurationError(f"min_version must be 'TLSv1.2' or 'TLSv1.3', not {self.min_version!r}")
        if self.verify_peer and not (self.ca_dir or self.ca_file):
            raise ConfigurationError(
                "TLS peer verification needs trusted CAs: set ca_dir (e.g. X509_CERT_DIR, "
                "/etc/grid-security/certificates) or ca_file"
            )
        if not 0 <= self.session_lifetime <= MAX_SESSION_LIFETIME:
            raise ConfigurationError(
                f"session_lifetime must be 0 to {MAX_SESSION_LIFETIME} seconds, not {self.session_lifetime!r}"
            )
        if self.session_cache_size < 1:
            raise ConfigurationError(f"session_cache_size must be at least 1, not {self.session_cache_size!r}")
        if self.key_file and not self.cert_file:
            raise ConfigurationError("key_file is set but cert_file is not")

    @property
    def credential_files(self) -> tuple[str, ...]:
        """Files whose change means the contexts built from this configuration must be rebuilt."""
        return tuple(p for p in (self.cert_file, self.key_file, self.ca_file) if p)

    def require_server_credentials(self) -> None:
        """A server always presents a certificate and always verifies its clients (mutual TLS, deny by default)."""
        if not self.cert_file:
            raise CredentialsError("a TLS server needs a certificate: set cert_file (and key_file), e.g. hostcert.pem")
        if not self.verify_peer:
            raise ConfigurationError("verify_peer=False (skipCACheck) is only allowed on clients")


def resolve_crl_mode(tls: TLSConfig) -> Literal["off", "leaf", "chain"]:
    """Turn ``"auto"`` into a concrete mode by looking for CRL files in the CA directory."""
    if tls.crl_mode != "auto":
        return tls.crl_mode
    if not tls.ca_dir:
        logger.info("crl_mode auto: no CA directory, CRL checking off")
        return "off"
    try:
        names = os.listdir(tls.ca_dir)
    except OSError as exc:
        raise CredentialsError(f"cannot read the CA directory {tls.ca_dir}: {exc.strerror}") from exc
    if any(_CRL_FILE.match(name) for name in names):
        logger.info("crl_mode auto: CRLs found in %s, checking the whole chain", tls.ca_dir)
        return "chain"
    logger.info("crl_mode auto: no CRL files (<hash>.rN) in %s, CRL checking off", tls.ca_dir)
    return "off"


def store_flags(tls: TLSConfig, *, allow_proxy_certs: int, crl_check: int, crl_check_all: int) -> int:
    """The certificate-store flags ``tls`` asks for, from the ``X509_V_FLAG_*`` values of the back end's library."""
    flags = allow_proxy_certs if tls.allow_proxies else 0
    crl_mode = resolve_crl_mode(tls)
    if crl_mode == "leaf":
        flags |= crl_check
    elif crl_mode == "chain":
        # CRL_CHECK alone would accept the proxy of a revoked user (the leaf is the proxy, never CRL-checked).
        flags |= crl_check | crl_check_all
    return flags


def require_tls(tls: TLSConfig | None, backend: str) -> TLSConfig:
    """``tls`` itself; a TLS back end given no :class:`TLSConfig` is a configuration error naming ``backend``."""
    if tls is None:
        raise ConfigurationError(f"the {backend} back end needs a TLSConfig (use the 'plain' back end for dip://)")
    return tls


@runtime_checkable
class Stream(Protocol):
    """One connected byte stream (plain TCP or TLS), used by one thread at a time.

    ``recv`` returns ``b""`` once the peer has closed (cleanly or not); a reset raises
    :class:`ConnectionClosedError`. A timeout raises :class:`DeadlineExceeded` and leaves the stream usable only for
    ``close()`` when it happened mid-write. ``pending()`` counts bytes already decrypted and buffered: a selector
    will not report them, so a server must drain them before going back to ``select``.
    """

    @property
    def peer_identity(self) -> PeerIdentity | None:
        """The verified peer (``None`` for plain TCP and for an unverified ``skipCACheck`` server)."""
        ...

    @property
    def peer_address(self) -> tuple[str, int]:
        """The peer's ``(host, port)``."""
        ...

    def send_all(self, data: bytes | memoryview) -> None:
        """Send every byte of ``data`` or raise."""
        ...

    def recv(self, max_bytes: int) -> bytes:
        """Return between 1 and ``max_bytes`` bytes, or ``b""`` at end of stream."""
        ...

    def recv_into(self, view: memoryview) -> int:
        """:meth:`recv` into the writable ``view`` (bulk data: no copy where the back end allows it); the number of
        bytes written at its start, 0 at end of stream."""
        ...

    def settimeout(self, seconds: float | None) -> None:
        """Per-operation timeout for later ``send_all``/``recv`` (``None``: block forever)."""
        ...

    def pending(self) -> int:
        """Bytes already received and buffered inside the stream (TLS records decrypted but not yet read)."""
        ...

    def fileno(self) -> int:
        """The socket's descriptor, for selectors; ``-1`` once closed."""
        ...

    def close(self) -> None:
        """Shut down (TLS close_notify when possible) and release the socket; idempotent, never raises."""
        ...


class HandshakeStatus(enum.Enum):
    """What a :class:`ServerHandshake` needs before its next :meth:`~ServerHandshake.step`."""

    #: Call ``step()`` again once the socket is readable.
    WANT_READ = "want-read"
    #: Call ``step()`` again once the socket is writable.
    WANT_WRITE = "want-write"
    #: The handshake is complete: take the stream with ``stream()``.
    DONE = "done"


class TLSStreamInfo:
    """What both TLS streams report the same way: the verified peer, its address, and a repr naming them.

    The stream sets ``_identity``, ``_peer`` and provides ``fileno()``.
    """

    _identity: PeerIdentity | None
    _peer: tuple[str, int]

    def fileno(self) -> int:
        raise NotImplementedError

    def __repr__(self) -> str:
        who = self._identity.dn if self._identity else "unverified"
        return f"<{type(self).__name__} peer={self._peer[0]}:{self._peer[1]} {who!r} fd={self.fileno()}>"

    @property
    def peer_identity(self) -> PeerIdentity | None:
        return self._identity

    @property
    def peer_address(self) -> tuple[str, int]:
        return self._peer


class ServerHandshake(Protocol):
    """A server-side handshake driven by a selector, one non-blocking ``step()`` at a time.

    A server thread that multiplexes many sockets must never wait on one slow client, so instead of
    :meth:`Backend.wrap_server` (which blocks until the handshake ends) it calls ``step()`` whenever the socket is
    ready as last requested. ``step()`` raises the same typed errors as ``wrap_server`` and closes the socket
    when it does; the caller enforces the handshake deadline and calls ``close()`` when it runs out.
    """

    def fileno(self) -> int:
        """The socket's descriptor, to register with a selector."""
        ...

    def step(self) -> HandshakeStatus:
        """Advance the handshake without blocking."""
        ...

    def stream(self) -> Stream:
        """The connected stream, once ``step()`` returned ``DONE`` (blocking mode, no timeout set)."""
        ...

    def close(self) -> None:
        """Abandon the handshake and close the socket (idempotent)."""
        ...


class Backend(Protocol):
    """Opens client streams and wraps accepted server sockets. Instances own their context caches."""

    name: str

    def connect(
        self,
        host: str,
        port: int,
        *,
        tls: TLSConfig | None,
        server_hostname: str | None = None,
        connect_timeout: float | None = 10.0,
        handshake_timeout: float | None = 10.0,
        keepalive: float | None = DEFAULT_KEEPALIVE,
    ) -> Stream:
        """Connect to ``host:port`` (each resolved address in turn) and complete the TLS handshake. ``keepalive``:
        seconds without any acknowledgement from the peer after which the stream fails with :class:`PeerSilent`
        (``None``: the system's defaults, hours)."""
        ...

    def wrap_server(
        self, sock: socket.socket, tls: TLSConfig | None, *, handshake_timeout: float | None = 10.0
    ) -> Stream:
        """Take ownership of an accepted socket and complete the server-side handshake (closing it on failure)."""
        ...

    def start_server_handshake(self, sock: socket.socket, tls: TLSConfig | None) -> ServerHandshake:
        """Take ownership of an accepted socket and return its handshake, to drive with ``step()`` (non-blocking)."""
        ...

    def prepare_server(self, tls: TLSConfig | None) -> None:
        """Build (and cache) the server context now, so bad credentials fail at start-up, not at first client."""
        ...


def get_backend(name: str = "pyopenssl", **options: object) -> Backend:
    """Return a new back end instance; TLS libraries are imported only here, on demand.

    ``options`` go to the back end's constructor (e.g. ``reload_interval=60.0``, ``session_reuse=True``).
    Keep the instance: it owns the context cache.
    """
    if name == "plain":
        from rpcframework.transports.plain import PlainBackend

        return PlainBackend(**options)
    if name == "pyopenssl":
        from rpcframework.transports.pyopenssl import PyOpenSSLBackend

        return PyOpenSSLBackend(**options)  # type: ignore[arg-type]
    if name == "m2crypto":
        if importlib.util.find_spec("M2Crypto") is None:
            raise ConfigurationError(
                "the m2crypto back end needs M2Crypto: pip install 'rpcframework[m2crypto]' "
                "(or use the default back end, 'pyopenssl')"
            )
        from rpcframework.transports.m2crypto import M2CryptoBackend

        return M2CryptoBackend(**options)  # type: ignore[arg-type]
    raise ConfigurationError(f"unknown transport back end {name!r}: choose 'plain', 'pyopenssl' or 'm2crypto'")


_X509_V_ERR_CERT_HAS_EXPIRED = 10

# X509_V_ERR_* codes (stable across OpenSSL 1.1 and 3.x) -> what failed and what the user can do about it.
_VERIFY_ERRORS: dict[int, str] = {
    2: "the issuer certificate is not in the trusted CA directory (unknown CA); add the CA to the trusted CA directory",
    3: "no CRL for a CA in the chain (crl_mode 'chain' needs a current <hash>.r0 for every CA); run fetch-crl",
    7: "a certificate signature is invalid",
    9: "a certificate is not yet valid (check the clocks of both hosts)",
    10: "a certificate has expired; renew it (or the proxy: dirac-proxy-init / voms-proxy-init)",
    11: "a CRL is not yet valid (check the clocks)",
    12: "a CRL has expired; run fetch-crl",
    18: "the peer sent a self-signed certificate that is not trusted",
    19: "a self-signed certificate in the chain is not trusted (unknown CA); add the CA to the trusted CA directory",
    20: "the issuer is not trusted (unknown CA); add the CA to the trusted CA directory",
    21: "the chain is incomplete (unable to verify the first certificate)",
    23: "a certificate in the chain has been revoked",
    24: "a certificate that is not a CA signed another one",
    26: "a certificate is not allowed for this purpose (client/server usage)",
    40: "proxy certificates are not allowed (allow_proxies is False)",
    62: "the server certificate does not match the host name",
    64: "the server certificate does not match the IP address",
}


#: Verification errors that mean "the peer's CA is not in our trusted CA directory".
_UNKNOWN_CA = frozenset({2, 18, 19, 20})


class UnknownCAError(PeerVerificationError):
    """The peer's chain does not lead to a CA in our trusted CA directory. The message does not name the setting
    that chose the directory; the layer that knows it (the client) adds it."""


def verify_error_message(code: int, depth: int | None = None) -> str:
    """Describe an OpenSSL certificate verification error code for a human."""
    text = _VERIFY_ERRORS.get(code, f"certificate verification failed (OpenSSL verify error {code})")
    return text if depth is None else f"{text} [verify error {code} at depth {depth}]"


# Alerts a peer sends when it refuses *our* certificate: what we present is the problem, not the peer's chain.
_OUR_CERT_REFUSED = (
    "alert unknown ca",
    "alert bad certificate",
    "alert certificate revoked",
    "alert certificate expired",
    "alert certificate unknown",
    "alert unsupported certificate",
    "alert certificate required",
    "alert access denied",
)
_NO_PEER_CERT = ("peer did not return a certificate", "certificate required")


def classify_tls_failure(text: str, *, verify_code: int | None, peer: str) -> RPCFrameworkError:
    """Map an OpenSSL error string (both libraries report OpenSSL's reason strings) onto our exception tree.

    ``verify_code`` is the X509 verification result when the library can tell it (0/None: none recorded).
    """
    lowered = text.lower()
    if verify_code:
        error = UnknownCAError if verify_code in _UNKNOWN_CA else PeerVerificationError
        return error(f"{peer}: refused the peer's certificate: {verify_error_message(verify_code)}")
    if "certificate verify failed" in lowered:
        return PeerVerificationError(f"{peer}: refused the peer's certificate ({text})")
    for alert in _OUR_CERT_REFUSED:
        if alert in lowered:
            reason = alert.removeprefix("alert ")
            return CredentialsError(
                f"{peer}: the peer refused our certificate ({reason}); check that it is valid, not revoked, "
                "and issued by a CA the peer trusts"
            )
    if any(marker in lowered for marker in _NO_PEER_CERT):
        return PeerVerificationError(
            f"{peer}: the client sent no certificate; clients must present a proxy or a user/host certificate"
        )
    if "unexpected eof" in lowered or "connection reset" in lowered:
        return ConnectionClosedError(
            f"{peer}: the connection closed during the TLS handshake (a server closes at once when it refuses the"
            " address: banned, or over its connection limit)"
        )
    return HandshakeError(
        f"{peer}: TLS handshake failed ({text}); is the peer speaking TLS 1.2+ (dips://)? A server that refuses the"
        " address (banned, connection limit) also closes here"
    )


def classify_stream_failure(text: str, peer: str) -> RPCFrameworkError:
    """:func:`classify_tls_failure` for an error on an established connection: a record that does not decrypt is
    altered or injected bytes, not a failed handshake."""
    lowered = text.lower()
    if "record layer failure" in lowered or "bad record mac" in lowered:
        return ConnectionClosedError(
            f"{peer}: a TLS record was refused ({text}): the bytes were altered or injected on the way; the"
            " connection is closed"
        )
    return classify_tls_failure(text, verify_code=None, peer=peer)


def connection_lost(where: str, code: int | None, detail: object, *, sending: bool = False) -> TransportError:
    """The error for a connection the system reported dead with errno ``code``: :class:`PeerSilent` when the peer
    stopped acknowledging (ETIMEDOUT: keepalive probes or sent data unanswered), else :class:`ConnectionClosedError`."""
    if code == errno.ETIMEDOUT:
        return PeerSilent(
            f"connection to {where} timed out: the peer acknowledged nothing, not even keepalive probes "
            "(the host is down or cut off by the network)"
        )
    return ConnectionClosedError(f"connection to {where} lost{' while sending' if sending else ''}: {detail}")


def check_resumed_identity(identity: PeerIdentity, peer: str) -> None:
    """Refuse a resumed TLS session whose chain has expired since the full handshake that verified it.

    A resumed handshake does not verify the chain again. Revocation is covered because a CRL change rebuilds the
    context, and a new context has an empty session cache; expiry needs this check.
    """
    if identity.seconds_left() <= 0.0:
        raise classify_tls_failure("", verify_code=_X509_V_ERR_CERT_HAS_EXPIRED, peer=peer)


@contextmanager
def credentials_errors(what: str) -> Iterator[None]:
    """Turn failures to read our own certificate/key/CA files into :class:`CredentialsError`."""
    try:
        yield
    except RPCFrameworkError:
        raise
    except Exception as exc:
        raise CredentialsError(f"cannot load {what}: {exc}") from exc


def refuse_encrypted_key(key_file: str) -> None:
    """Refuse a key we must not load, before any TLS library reads it: one that other users can write (see
    :mod:`rpcframework.security.keyfiles`), or a passphrase-protected one (OpenSSL would prompt on the terminal,
    hanging a server). Every back end calls this for each key it loads."""
    check_key_file_mode(key_file)
    try:
        with open(key_file, "rb") as handle:
            encrypted = b"ENCRYPTED" in handle.read(1 << 20)
    except OSError as exc:
        raise CredentialsError(f"cannot read key file {key_file}: {exc.strerror or exc}") from exc
    if encrypted:
        raise CredentialsError(
            f"{key_file} holds an encrypted private key; services and proxies need an unencrypted key "
            "(protect it with file permissions, e.g. chmod 400)"
        )
