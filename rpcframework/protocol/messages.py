"""Typed DISET messages: the proposal, extra credentials, our negotiated extensions, keepalives, transfer chunks.

Every DISET message is an ``S_OK``/``S_ERROR`` envelope whose ``Value`` has a shape fixed by the protocol
phase. This module converts between those plain values (what the codec produces) and frozen dataclasses, and
validates everything a peer controls: ``from_wire`` never lets a malformed value through and raises
:class:`~rpcframework.errors.ProtocolError` with DIRAC's own message where DIRAC has one (``"Foo is not a known
action type"``, ``"Invalid action proposal"``), so DIRAC clients see the texts they know.

The wire shapes are documented in ``docs/protocol.md``.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, cast

from rpcframework.errors import ProtocolError
from rpcframework.returnvalues import EOVERLOAD, EUPGRADE, S_ERROR, S_OK, DErrorReturn, DOKReturn, DReturn
from rpcframework.security.extra_credentials import (  # re-exported: the protocol's names for them
    HOST_CREDENTIALS,
    NO_EXTRA_CREDENTIALS,
    DelegatedIdentity,
    ExtraCredentials,
    HostCredentials,
    NoExtraCredentials,
)

__all__ = [
    "EXTENSIONS_KEY",
    "GOODBYE_KEY",
    "HOST_CREDENTIALS",
    "INVALID_PROPOSAL",
    "NO_EXTRA_CREDENTIALS",
    "PIPELINED_MARK",
    "PROTOCOL_VERSION",
    "RETRY_AFTER_KEY",
    "TRACE_KEY",
    "ActionType",
    "DelegatedIdentity",
    "Extensions",
    "ExtraCredentials",
    "Feature",
    "FileInfo",
    "HostCredentials",
    "KeepAlive",
    "NoExtraCredentials",
    "Proposal",
    "TraceContext",
    "TransferDirection",
    "arguments_from_wire",
    "arguments_to_wire",
    "check_envelope",
    "extra_credentials_from_wire",
    "overload_error",
    "sanitize_result",
    "upgrade_required_error",
]

#: Our protocol version, sent in the extensions offer and the ack. Bump it on incompatible extension changes.
PROTOCOL_VERSION: Final = 1
#: The key of our extensions inside the fifth proposal element and inside the ack value.
EXTENSIONS_KEY: Final = "rpcframework"
#: DIRAC's reply to a proposal it cannot parse at all.
INVALID_PROPOSAL: Final = "Invalid action proposal"
#: The fifth proposal element of a pipelined RPC proposal (its arguments frame follows at once).
PIPELINED_MARK: Final = {"pipeline": True}
#: The key of the W3C trace context inside the fifth proposal element (``trace`` extension).
TRACE_KEY: Final = "trace"
#: W3C ``tracestate`` is at most 512 characters; anything longer is dropped, not truncated.
_MAX_TRACESTATE: Final = 512
#: The key that marks a server's goodbye: ``S_ERROR`` + ``"goodbye": true``, sent on a ``pipeline`` connection
#: instead of reading anything more (the client's request in flight, if any, was not executed).
GOODBYE_KEY: Final = "goodbye"
#: The key of the delay (seconds) a server suggests in its ``EOVERLOAD`` refusal. Only the server framework sets it,
#: and only when no handler ran (see :func:`overload_error`): a client may then retry the call. DIRAC clients ignore
#: it, as our clients ignore DIRAC's ``CallStack``.
RETRY_AFTER_KEY: Final = "RetryAfter"

# Peer strings are echoed in error messages (DIRAC compatibility); cap them so a reply never grows with the input.
_MAX_ECHO: Final = 80
_MAX_NAME: Final = 256
_MAX_KEEPALIVE_ID: Final = 256


def _echo(value: str) -> str:
    text = value if len(value) <= _MAX_ECHO else value[:_MAX_ECHO] + "..."
    # Control characters would let a peer forge log lines or terminal escapes in our error texts.
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def _is_sequence(value: object) -> bool:
    # DEncode gives tuples for "t", JSON gives lists; a str is a Sequence but never a DISET list.
    return isinstance(value, list | tuple)


def check_envelope(message: object) -> DReturn:
    """Return ``message`` as an envelope, or raise :class:`ProtocolError` if it is not ``S_OK``/``S_ERROR``."""
    if isinstance(message, dict):
        ok = message.get("OK")
        if ok is True and "Value" in message:
            return message  # type: ignore[return-value]
        if ok is False and isinstance(message.get("Message"), str):
            return message  # type: ignore[return-value]
    raise ProtocolError("message is not an S_OK/S_ERROR envelope")


class _FrameworkOverload(dict[str, Any]):
    """An ``EOVERLOAD`` refusal made by the server framework before any handler ran (:func:`overload_error`).

    Its own type, so that :func:`sanitize_result` can tell it from a handler's result: a handler that passes on
    another service's overload reply did run, and its caller must not retry it.
    """

    __slots__ = ()


def overload_error(error: DErrorReturn, retry_after: float) -> DErrorReturn:
    """``error`` (an ``EOVERLOAD`` refusal) with the delay the server suggests before a retry, in seconds.

    Only for refusals made before any handler code ran (a full worker queue, a method at its concurrency limit):
    the ``RetryAfter`` key tells the client that the call is safe to retry.
    """
    if error.get("Errno") != EOVERLOAD:
        raise ValueError("overload_error() marks EOVERLOAD refusals only")
    delay = float(retry_after)
    if not math.isfinite(delay) or delay < 0:
        raise ValueError(f"retry_after must be a finite number of seconds >= 0, not {retry_after!r}")
    reply = _FrameworkOverload(sanitize_result(error))
    reply[RETRY_AFTER_KEY] = round(delay, 3)
    return cast(DErrorReturn, reply)


def sanitize_result(result: DReturn) -> DReturn:
    """Strip what DIRAC's handlers may attach but a peer must never see (server stack, exception info).

    Error envelopes are rebuilt as ``{"OK": False, "Errno": int, "Message": str}`` (DIRAC's key order), so a
    handler cannot leak anything else through one. The one exception is the framework's own overload refusal
    (:func:`overload_error`), which keeps its ``RetryAfter`` key.
    """
    if result["OK"]:
        if "CallStack" in result or "ExecInfo" in result:
            return {k: v for k, v in result.items() if k not in ("CallStack", "ExecInfo")}  # type: ignore[return-value]
        return result
    errno = result.get("Errno", 0)
    clean: DErrorReturn = {"OK": False, "Errno": errno if type(errno) is int else 0, "Message": str(result["Message"])}
    if type(result) is _FrameworkOverload:  # idempotent: the marked copy stays marked
        marked = _FrameworkOverload(clean)
        marked[RETRY_AFTER_KEY] = result[RETRY_AFTER_KEY]
        return cast(DErrorReturn, marked)
    return clean


def upgrade_required_error(min_version: int, peer_version: int | None) -> DErrorReturn:
    """The refusal a server sends to a client older than ``min_version`` (Errno ``EUPGRADE``)."""
    have = "no protocol version" if peer_version is None else f"protocol version {peer_version}"
    return S_ERROR(EUPGRADE, f"this service needs rpcframework protocol version {min_version} or newer, got {have}")


class ActionType(enum.Enum):
    """The first element of the proposal's action pair."""

    RPC = "RPC"
    FileTransfer = "FileTransfer"
    Connection = "Connection"
    Message = "Message"


class TransferDirection(enum.Enum):
    """The action name of a ``FileTransfer`` proposal, seen from the client."""

    FromClient = "FromClient"
    ToClient = "ToClient"
    BulkFromClient = "BulkFromClient"
    BulkToClient = "BulkToClient"
    ListBulk = "ListBulk"


# --- extra credentials --------------------------------------------------------------------------------------------


def extra_credentials_from_wire(value: object) -> ExtraCredentials:
    """Parse the third proposal element."""
    if value == "":
        return NO_EXTRA_CREDENTIALS
    if value == "hosts":
        return HOST_CREDENTIALS
    if _is_sequence(value):
        items: Sequence[object] = value  # type: ignore[assignment]
        if len(items) == 2:
            dn, group = items
            if isinstance(dn, str) and isinstance(group, str) and 0 < len(dn) <= 1024 and len(group) <= _MAX_NAME:
                return DelegatedIdentity(dn, group)
    raise ProtocolError("Invalid extra credentials in the action proposal")


# --- extensions ---------------------------------------------------------------------------------------------------


class Feature(enum.Enum):
    """An rpcframework extension negotiated per connection (wire names are the values)."""

    #: Many proposal/result exchanges on one connection; ``dka`` keepalives while idle.
    REUSE = "reuse"
    #: Arguments may be ``{"args": [...], "kwargs": {...}}`` instead of a list.
    KWARGS = "kwargs"
    #: Arguments and results use the lossless typed encoding (``Encoding.TYPED``).
    TYPED = "typed"
    #: File-transfer chunks are not acknowledged one by one.
    STREAM = "stream"
    #: File transfers may start at an offset (resume).
    RESUME = "resume"
    #: With ``reuse``: after the negotiating exchange, an RPC proposal is followed at once by its arguments and the
    #: server answers ack + result (or the refusal) in one write: one round trip per call.
    PIPELINE = "pipeline"
    #: With ``stream``: the whole file is checked with CRC-32 instead of SHA-256 (see ``docs/transfer.md``).
    CRC32 = "crc32"
    #: Proposals may carry a W3C trace context (``"trace"`` in the fifth element) for distributed tracing.
    TRACE = "trace"


_FEATURES_BY_NAME: Final = {f.value: f for f in Feature}


@dataclass(frozen=True, slots=True)
class Extensions:
    """What a client offers in the fifth proposal element, and what a server accepts in its ack value.

    Wire form (inside both): ``{"rpcframework": {"version": 1, "features": ["kwargs", "reuse", ...]}}``;
    feature names are sorted so the bytes are stable. Unknown feature names and keys from a newer peer are ignored.
    A server accepting ``pipeline`` also announces ``"idle_timeout": <seconds>``, how long it keeps an idle
    connection open: the client stops reusing a connection well before that (see ``docs/protocol.md``).
    """

    version: int = PROTOCOL_VERSION
    features: frozenset[Feature] = field(default_factory=lambda: frozenset(Feature))
    idle_timeout: float | None = None

    def __contains__(self, feature: object) -> bool:
        return feature in self.features

    def to_wire(self) -> dict[str, Any]:
        names = sorted(f.value for f in self.features)
        body: dict[str, Any] = {"version": self.version, "features": names}
        if self.idle_timeout is not None and Feature.PIPELINE in self.features:
            body["idle_timeout"] = self.idle_timeout
        return {EXTENSIONS_KEY: body}

    @classmethod
    def from_wire(cls, value: object) -> Extensions | None:
        """Parse an extensions dict; ``None`` when ``value`` carries none (DIRAC's ``None`` ack, other dicts)."""
        if not isinstance(value, dict) or EXTENSIONS_KEY not in value:
            return None
        body = value[EXTENSIONS_KEY]
        if not isinstance(body, dict):
            raise ProtocolError("Invalid rpcframework extensions")
        version = body.get("version")
        names = body.get("features", [])
        if type(version) is not int or version < 1 or not _is_sequence(names) or len(names) > 64:
            raise ProtocolError("Invalid rpcframework extensions")
        features = frozenset(_FEATURES_BY_NAME[n] for n in names if isinstance(n, str) and n in _FEATURES_BY_NAME)
        idle = body.get("idle_timeout")
        if idle is not None and (type(idle) not in (int, float) or not 0 < idle < 1e9):
            raise ProtocolError("Invalid rpcframework extensions")
        return cls(version, features, idle if Feature.PIPELINE in features else None)

    def negotiate(self, offer: Extensions) -> Extensions:
        """What a server supporting ``self`` accepts from ``offer``: the common version and features (plus the
        server's idle timeout when ``pipeline`` is accepted). ``pipeline`` is only accepted together with ``reuse``."""
        features = self.features & offer.features
        if Feature.REUSE not in features:
            features -= {Feature.PIPELINE}
        idle = self.idle_timeout if Feature.PIPELINE in features else None
        return Extensions(min(self.version, offer.version), features, idle)


# --- trace context ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TraceContext:
    """A W3C trace context (``traceparent``, optional ``tracestate``) riding in a proposal (``trace`` extension)."""

    traceparent: str
    tracestate: str | None = None

    def to_wire(self) -> dict[str, str]:
        wire = {"traceparent": self.traceparent}
        if self.tracestate:
            wire["tracestate"] = self.tracestate
        return wire

    def as_carrier(self) -> dict[str, str]:
        """The context as the headers-like mapping OpenTelemetry propagators read."""
        return self.to_wire()

    @classmethod
    def from_wire(cls, value: object) -> TraceContext | None:
        """Parse a peer's trace context; anything malformed is ignored (``None``), as W3C asks of a receiver."""
        if not isinstance(value, dict):
            return None
        parent, state = value.get("traceparent"), value.get("tracestate")
        if not isinstance(parent, str) or not is_traceparent(parent):
            return None
        if not isinstance(state, str) or len(state) > _MAX_TRACESTATE or not state.isprintable():
            state = None
        return cls(parent, state)


#: version-traceid-spanid-flags, lower-case hex; version "ff" and all-zero ids are invalid (W3C trace context).
_TRACEPARENT: Final = re.compile(r"(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}", re.ASCII)


def is_traceparent(text: str) -> bool:
    return len(text) == 55 and _TRACEPARENT.fullmatch(text) is not None


# --- proposal -----------------------------------------------------------------------------------------------------


def _parse_service_info(value: object) -> tuple[str, str, str | None]:
    if not _is_sequence(value) or len(value) < 2:  # type: ignore[arg-type]
        raise ProtocolError(INVALID_PROPOSAL)
    items: Sequence[object] = value  # type: ignore[assignment]
    service, setup = items[0], items[1]
    vo = items[2] if len(items) > 2 else None
    if not isinstance(service, str) or not isinstance(setup, str) or not (vo is None or isinstance(vo, str)):
        raise ProtocolError(INVALID_PROPOSAL)
    system, sep, component = service.partition("/")
    if not sep or not system or not component or "/" in component or len(service) > _MAX_NAME:
        # No such name can be a service of ours; DIRAC answers the same for an unknown one.
        raise ProtocolError(f"{_echo(service)} is not up in this server")
    if len(setup) > _MAX_NAME or (vo is not None and len(vo) > _MAX_NAME):
        raise ProtocolError(INVALID_PROPOSAL)
    return service, setup, vo


def _parse_action(value: object) -> tuple[ActionType, str]:
    if not _is_sequence(value) or len(value) != 2:  # type: ignore[arg-type]
        raise ProtocolError(INVALID_PROPOSAL)
    raw_type: object = value[0]  # type: ignore[index]
    name: object = value[1]  # type: ignore[index]
    if not isinstance(raw_type, str) or not isinstance(name, str):
        raise ProtocolError(INVALID_PROPOSAL)
    try:
        action_type = ActionType(raw_type)
    except ValueError:
        raise ProtocolError(f"{_echo(raw_type)} is not a known action type") from None
    if not name or len(name) > _MAX_NAME:
        raise ProtocolError(INVALID_PROPOSAL)
    if action_type is ActionType.FileTransfer and name not in TransferDirection.__members__:
        raise ProtocolError(f"Service can't transfer files {_echo(name)}")
    return action_type, name


@dataclass(frozen=True, slots=True, kw_only=True)
class Proposal:
    """The first message of every exchange: which service, which action, as whom, and what we offer.

    Wire form (the ``Value`` of an ``S_OK``)::

        [[service, setup, vo], [action_type, action_name], extra_credentials, client_version, extensions?]

    ``vo`` and ``client_version`` may be absent on the wire (older DIRAC clients); they are ``None`` here then.
    The fifth element is sent only when ``extensions`` is set: DIRAC services accept and ignore it.
    """

    service: str
    action_name: str
    action_type: ActionType = ActionType.RPC
    setup: str = "None"
    vo: str | None = "unknown"
    extra_credentials: ExtraCredentials = NO_EXTRA_CREDENTIALS
    client_version: str | None = None
    extensions: Extensions | None = None
    #: The arguments follow this proposal at once (``pipeline`` negotiated); wire: a fifth element
    #: ``{"pipeline": true}``, never together with an offer.
    pipelined: bool = False
    #: The caller's trace context (``trace`` extension); wire: ``"trace"`` in the fifth element.
    trace_context: TraceContext | None = None

    @property
    def transfer_direction(self) -> TransferDirection | None:
        """The direction of a ``FileTransfer`` proposal, else ``None``."""
        if self.action_type is ActionType.FileTransfer:
            return TransferDirection(self.action_name)
        return None

    def to_wire(self) -> list[Any]:
        """The proposal as DIRAC's list, ready for ``S_OK`` and the codec."""
        service_info = [self.service, self.setup] if self.vo is None else [self.service, self.setup, self.vo]
        wire: list[Any] = [
            service_info,
            [self.action_type.value, self.action_name],
            self.extra_credentials.to_wire(),
        ]
        trace = self.trace_context
        if self.client_version is not None or self.extensions is not None or self.pipelined or trace is not None:
            wire.append("" if self.client_version is None else self.client_version)
        fifth: dict[str, Any] | None = None
        if self.extensions is not None:
            fifth = self.extensions.to_wire()
        elif self.pipelined:
            fifth = PIPELINED_MARK
        if trace is not None:
            fifth = {**(fifth or {}), TRACE_KEY: trace.to_wire()}
        if fifth is not None:
            wire.append(fifth)
        return wire

    @classmethod
    def from_wire(cls, value: object) -> Proposal:
        """Validate and parse a proposal value; raises :class:`ProtocolError` with DIRAC's messages."""
        if not _is_sequence(value) or len(value) < 3:  # type: ignore[arg-type]
            raise ProtocolError(INVALID_PROPOSAL)
        items: Sequence[object] = value  # type: ignore[assignment]
        service, setup, vo = _parse_service_info(items[0])
        action_type, action_name = _parse_action(items[1])
        extra_credentials = extra_credentials_from_wire(items[2])
        # DIRAC ignores a fourth element that is not a version string, and anything after it; so do we.
        version = items[3] if len(items) > 3 else None
        client_version = version if isinstance(version, str) and len(version) <= _MAX_NAME else None
        fifth = items[4] if len(items) > 4 else None
        extensions = Extensions.from_wire(fifth)
        trace = TraceContext.from_wire(fifth.get(TRACE_KEY)) if isinstance(fifth, dict) else None
        pipelined = (
            isinstance(fifth, dict) and fifth.get("pipeline") is True and len(fifth) == (2 if TRACE_KEY in fifth else 1)
        )
        if pipelined and action_type is not ActionType.RPC:
            raise ProtocolError(INVALID_PROPOSAL)
        return cls(
            service=service,
            action_name=action_name,
            action_type=action_type,
            setup=setup,
            vo=vo,
            extra_credentials=extra_credentials,
            client_version=client_version,
            extensions=extensions,
            pipelined=pipelined,
            trace_context=trace,
        )


# --- keepalive ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """A keepalive ping (``kaping`` true) or pong; sent after the ``dka`` mark as ``S_OK({"id", "kaping"})``."""

    id: str
    ping: bool = True

    def pong(self) -> KeepAlive:
        """The answer to this ping: the same id, ``kaping`` false."""
        return KeepAlive(self.id, False)

    def to_wire(self) -> DOKReturn:
        return S_OK({"id": self.id, "kaping": self.ping})

    @classmethod
    def from_wire(cls, message: object) -> KeepAlive:
        """Parse a whole keepalive message (the envelope)."""
        value = check_envelope(message).get("Value")
        if isinstance(value, dict):
            ka_id, ping = value.get("id"), value.get("kaping")
            if isinstance(ka_id, str) and len(ka_id) <= _MAX_KEEPALIVE_ID and isinstance(ping, bool):
                return cls(ka_id, ping)
        raise ProtocolError("Invalid keepalive message")


# --- arguments ----------------------------------------------------------------------------------------------------


def arguments_to_wire(args: Sequence[Any], kwargs: Mapping[str, Any] | None) -> DOKReturn:
    """The arguments message: ``S_OK([args...])``, or ``S_OK({"args": [...], "kwargs": {...}})`` (extension)."""
    if kwargs:
        return S_OK({"args": list(args), "kwargs": dict(kwargs)})
    return S_OK(args if type(args) is list else list(args))


#: DIRAC's answer when the arguments value is not a list (observed on a 9.1.22 service).
ARGUMENTS_ERROR: Final = "Error in parameter check: 0"


def arguments_from_wire(message: object, *, kwargs_allowed: bool) -> tuple[list[Any], dict[str, Any]]:
    """Parse an arguments message into ``(args, kwargs)``; raises :class:`ProtocolError`."""
    envelope = check_envelope(message)
    if not envelope["OK"]:
        raise ProtocolError(ARGUMENTS_ERROR)
    value = envelope["Value"]
    if type(value) is list:
        return value, {}
    if isinstance(value, tuple):
        return list(value), {}
    if kwargs_allowed and isinstance(value, dict) and set(value) == {"args", "kwargs"}:
        args, kwargs = value["args"], value["kwargs"]
        if _is_sequence(args) and isinstance(kwargs, dict) and all(type(k) is str for k in kwargs):
            return list(args), kwargs
    raise ProtocolError(ARGUMENTS_ERROR)


# --- file transfer ------------------------------------------------------------------------------------------------

_SENDS_SIZE: Final = frozenset({TransferDirection.FromClient, TransferDirection.BulkFromClient})


@dataclass(frozen=True, slots=True)
class FileInfo:
    """The message after a ``FileTransfer`` ack: ``[file_id, token, size]`` (uploads) or ``[file_id, token]``.

    ``size`` is -1 for a bulk upload of unknown size. ``offset`` (resume extension only) travels as a trailing
    ``{"offset": n}`` element, which is never sent to a peer that did not negotiate ``resume``.
    """

    file_id: str
    token: str = ""
    size: int | None = None
    offset: int = 0

    def to_wire(self, direction: TransferDirection) -> list[Any]:
        wire: list[Any] = [self.file_id, self.token]
        if direction in _SENDS_SIZE:
            wire.append(-1 if self.size is None else self.size)
        if self.offset:
            wire.append({"offset": self.offset})
        return wire

    @classmethod
    def from_wire(cls, message: object, direction: TransferDirection, *, resume_allowed: bool = False) -> FileInfo:
        value = check_envelope(message).get("Value")
        if not _is_sequence(value):
            raise ProtocolError("Invalid file transfer information")
        items: list[Any] = list(value)  # type: ignore[arg-type]
        offset = 0
        if resume_allowed and items and isinstance(items[-1], dict):
            raw_offset = items.pop().get("offset", 0)
            if type(raw_offset) is not int or raw_offset < 0:
                raise ProtocolError("Invalid file transfer offset")
            offset = raw_offset
        expected = 3 if direction in _SENDS_SIZE else 2
        if len(items) != expected or not isinstance(items[0], str) or not isinstance(items[1], str):
            raise ProtocolError("Invalid file transfer information")
        size = items[2] if expected == 3 else None
        if size is not None and (type(size) is not int or size < -1):
            raise ProtocolError("Invalid file transfer size")
        return cls(items[0], items[1], size, offset)
