"""The exception tree of rpcframework.

Inside the framework failures are exceptions; the public API and the wire carry ``S_OK``/``S_ERROR``
envelopes (:mod:`rpcframework.returnvalues` converts between the two). Every exception we raise derives from
:class:`RPCFrameworkError`, so ``except RPCFrameworkError`` catches all of ours and nothing else::

    RPCFrameworkError
    ├── ConfigurationError          bad settings, unknown option, unresolvable URL
    ├── CodecError                  a payload that cannot be encoded or decoded
    │   └── CodecLimitError         ... because it is too big or too deeply nested
    ├── ProtocolError               the peer broke the DISET protocol
    │   ├── FrameError              bad length header, no colon in the first 10 bytes
    │   │   └── FrameTooLargeError  declared length over the configured maximum
    │   └── UnexpectedMessageError  a well-formed message that makes no sense in this state
    ├── SecurityError               credentials and trust
    │   ├── CredentialsError        our own certificate, key or proxy is missing, unreadable or expired
    │   ├── PeerVerificationError   the peer's chain is untrusted, expired, revoked, or names another host
    │   └── AuthorizationError      the peer is known but not allowed (Errno 1111, "Unauthorized query")
    ├── TransportError              the I/O seam failed
    │   ├── ConnectError            could not reach the peer (refused, unreachable)
    │   │   └── NameResolutionError the host name does not resolve (DNS); never retried on the same URL
    │   ├── HandshakeError          TLS handshake failed for a reason other than verification
    │   ├── ConnectionClosedError   the peer closed the connection (possibly mid-frame)
    │   └── DeadlineExceeded        a timeout or deadline ran out (also a builtin ``TimeoutError``)
    │       ├── HandshakeTimeout    the peer accepted TCP but did not answer the TLS handshake in time
    │       └── PeerSilent          an open connection's peer acknowledged nothing for Timeout.keepalive
    └── RemoteError                 the peer answered ``S_ERROR``; ``.result`` holds the envelope
        └── ServiceOverloaded       ... Errno 1601 from the server framework itself: nothing ran, retry later

Each exception has an ``errno`` (0 when none applies) that becomes the envelope's ``Errno``.

A few specialised subclasses live next to the code that raises them, still inside this tree:
``client.options.UnknownOptionError`` (ConfigurationError, TypeError), ``server.typecheck.HandlerDefinitionError``
(ConfigurationError, TypeError: raised when a handler class is defined), ``server.service.ServiceStartError``
(ConfigurationError: a service that cannot start), ``transports.base.UnknownCAError`` (PeerVerificationError: the
peer's CA is not in our trusted CA directory; the client adds which directory and which setting chose it),
``transports.plain.ConnectTimeout`` (DeadlineExceeded: the TCP connect itself timed out),
``security.authz.AccessDenied`` (AuthorizationError, with a ``.reason`` in user terms),
``server.limits.MethodOverloaded`` (errno 1601), ``transfer.helper.TransferError`` (a file transfer failed),
``transfer.bulk.UnsafeArchiveError`` (RPCFrameworkError, ValueError: a bulk archive refused, a member could escape
its directory or the archive is over a limit), ``protocol.events.LocalProtocolError`` (our own code misused a
protocol state machine: a bug, not a peer fault) and its ``client.inner.KeywordArgumentsUnsupported`` (the server
did not negotiate keyword arguments; nothing was sent).

One exception stands outside the tree: ``returnvalues.SErrorException``, DIRAC's name for an ``S_ERROR`` raised by
``returnValueOrRaise``; it derives from ``Exception`` as DIRAC's does, so catch it next to RPCFrameworkError.
"""

from __future__ import annotations

import errno as _errno
from typing import Any

from rpcframework.returnvalues import ENOAUTH, DErrorReturn


class RPCFrameworkError(Exception):
    """Base of every exception rpcframework raises."""

    errno: int = 0

    def __init__(self, message: str = "", *, errno: int | None = None) -> None:
        super().__init__(message)
        if errno is not None:
            self.errno = errno


class ConfigurationError(RPCFrameworkError):
    """Invalid or incomplete settings: fix the configuration or the arguments named in the message."""


class CodecError(RPCFrameworkError):
    """A payload could not be encoded or decoded."""


class CodecLimitError(CodecError):
    """A payload exceeds a configured size, length or nesting limit."""


class ProtocolError(RPCFrameworkError):
    """The peer does not speak the DISET protocol as expected."""


class FrameError(ProtocolError):
    """A frame header is malformed."""


class FrameTooLargeError(FrameError):
    """A frame declares a length over the configured maximum; rejected before any buffering."""


class UnexpectedMessageError(ProtocolError):
    """A well-formed message arrived that is not valid in the connection's current state."""


class SecurityError(RPCFrameworkError):
    """Base for credential, trust and authorization failures."""


class CredentialsError(SecurityError):
    """Our own credentials are missing, unreadable, or expired."""


class PeerVerificationError(SecurityError):
    """The peer's certificate chain was refused (unknown CA, expired, revoked, wrong host name, none sent)."""


class AuthorizationError(SecurityError):
    """The caller is not allowed to do this (DIRAC's ENOAUTH, 1111)."""

    errno = ENOAUTH


class TransportError(RPCFrameworkError):
    """The connection failed below the protocol."""


class ConnectError(TransportError):
    """The peer could not be reached."""

    errno = _errno.ECONNREFUSED


class NameResolutionError(ConnectError):
    """The host name does not resolve (DNS). Another attempt at the same name would get the same answer, so the
    client does not retry it; it has no errno (DIRAC's ``Connection refused`` would be a wrong label)."""

    errno = 0


class HandshakeError(TransportError):
    """The TLS handshake failed (the peer is not speaking TLS, or no common protocol/cipher)."""


class ConnectionClosedError(TransportError):
    """The peer closed the connection."""

    errno = _errno.ECONNRESET


class DeadlineExceeded(TransportError, TimeoutError):
    """A timeout or the call's deadline ran out."""

    errno = _errno.ETIMEDOUT


class HandshakeTimeout(DeadlineExceeded):
    """The peer accepted the TCP connection but did not answer the TLS handshake within its limit
    (``Timeout.handshake``): not a ``dips://`` service on that port, or a server too busy to answer."""


class PeerSilent(DeadlineExceeded):
    """An open connection's peer acknowledged nothing, not even TCP keepalive probes, for longer than its limit
    (``Timeout.keepalive``): the host is down or cut off by the network (a slow handler still answers the probes).
    A call whose arguments were sent is not retried: it may have run there."""


class RemoteError(RPCFrameworkError):
    """The peer answered with ``S_ERROR``; the envelope is kept in :attr:`result`."""

    def __init__(self, result: DErrorReturn) -> None:
        super().__init__(result["Message"], errno=int(result.get("Errno", 0)))
        self.result: DErrorReturn = result

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.result,))


class ServiceOverloaded(RemoteError):
    """The server refused the call before running anything (``EOVERLOAD`` with a ``RetryAfter`` suggestion).

    Unlike other failures after the arguments were sent, this one is safe to retry: the server said no handler ran.
    ``retry_after`` is the delay the server suggested, in seconds.
    """

    def __init__(self, result: DErrorReturn, retry_after: float = 0.0) -> None:
        super().__init__(result)
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.result, self.retry_after))
