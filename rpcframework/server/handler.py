"""``RequestHandler``: the base class a service author subclasses.

The DISET conventions are kept so DIRAC handlers port with few changes::

    class DispatcherHandler(RequestHandler):
        types_next_file = [int, str]
        auth_next_file = ["authenticated"]

        def export_next_file(self, project_id, worker_id):
            return S_OK(...)

What changes is when mistakes show up: the method table is compiled by ``__init_subclass__`` when the class
statement runs (see :mod:`rpcframework.server.methods`), so an ``export_`` without ``types_`` is a
:class:`~rpcframework.server.typecheck.HandlerDefinitionError` at import time, not a server error at call time.

Lifecycle: :func:`initialize_handler_class` runs each class's own ``initializeHandler(serviceInfo)`` once per
service, base first; then every request gets a fresh instance, built with its :class:`RequestContext`, on which
``initialize()`` runs before the exported method.
"""

from __future__ import annotations

import datetime
import logging
import os
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from rpcframework.returnvalues import S_ERROR, S_OK, DReturn, isReturnStructure
from rpcframework.server.context import PRIVATE_CREDENTIAL_KEYS, RequestContext
from rpcframework.server.describe import describe_service
from rpcframework.server.methods import MethodTable, compile_method_table
from rpcframework.server.typecheck import HandlerDefinitionError

logger = logging.getLogger(__name__)


def _utcnow() -> datetime.datetime:
    # DIRAC exchanges naive UTC datetimes; a DIRAC client decoding ping's answer expects one.
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def _host_uptime() -> int | None:
    try:
        return int(time.clock_gettime(time.CLOCK_BOOTTIME))
    except (AttributeError, OSError):  # not Linux: DIRAC also leaves the key out when it cannot tell
        return None


def _load_average() -> str | None:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except (AttributeError, OSError):
        return None


class RequestHandler:
    """Base class of every service handler. See ``docs/services.md``.

    Subclass attributes:

    - ``export_<name>(self, ...)``: a remote method; must return ``S_OK(...)`` or ``S_ERROR(...)``.
    - ``types_<name> = [...]``: mandatory, one spec per positional argument (a type, a list of alternative types,
      or ``None`` to skip that position).
    - ``kwtypes_<name> = {"param": spec}``: optional, the keyword arguments the method accepts (our extension).
    - ``auth_<name> = [...]``: optional, the handler's own authorization rule (the configuration overrides it;
      with neither, the call is refused).
    - ``transfer_<hook>`` (``fromClient``, ``toClient``, ``bulkFromClient``, ``bulkToClient``, ``listBulk``) and
      ``auth_transfer_<hook>``: file-transfer hooks.

    Attribute names starting with ``_rpc`` are reserved for the framework.
    """

    _rpc_table: ClassVar[MethodTable]
    __slots__ = ("__dict__", "_rpc_context")

    types_ping: ClassVar[list[Any]] = []
    auth_ping: ClassVar[list[str]] = ["all"]
    types_whoami: ClassVar[list[Any]] = []
    auth_whoami: ClassVar[list[str]] = ["all"]
    # DIRAC's echo takes a string and has no built-in rule; we keep both (the captures show the str check on the
    # wire). A service can widen it with ``types_echo = [None]``, or remove it with ``export_echo = None``.
    types_echo: ClassVar[list[Any]] = [str]
    # Anyone may ask; the answer lists only what the asker may call (server/describe.py).
    types_describe: ClassVar[list[Any]] = []
    auth_describe: ClassVar[list[str]] = ["all"]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = vars(cls).get("initializeHandler")
        if init is not None and not isinstance(init, classmethod):
            raise HandlerDefinitionError(
                f"{cls.__qualname__}.initializeHandler must be a @classmethod taking (cls, serviceInfo)"
            )
        cls._rpc_table = compile_method_table(cls)

    def __init__(self, context: RequestContext) -> None:
        self._rpc_context = context

    # -- lifecycle -------------------------------------------------------------------------------------------

    @classmethod
    def initializeHandler(cls, serviceInfo: Mapping[str, Any]) -> DReturn | None:
        """Run once per service before the first request; return ``S_OK()``/``S_ERROR()`` (``None`` counts as OK).

        Define it as a ``@classmethod`` in your class; do not call ``super()``: the framework runs each ancestor's
        own ``initializeHandler`` itself, base first, bound to the service's handler class.
        """
        return None

    def initialize(self) -> None:
        """Per-request set-up on the fresh instance, before the exported method runs. Override freely."""

    @classmethod
    def method_table(cls) -> MethodTable:
        """The compiled table of this class's exports and transfer hooks."""
        return cls._rpc_table

    # -- what the handler knows about its caller -------------------------------------------------------------

    @property
    def request_context(self) -> RequestContext:
        """The immutable description of the request being served."""
        return self._rpc_context

    @property
    def caller(self) -> Any:
        """The caller's identity object as the reactor resolved it (``None`` for an anonymous ``dip://`` peer)."""
        return self._rpc_context.caller

    @property
    def log(self) -> logging.Logger:
        """A logger named after the handler's module (DIRAC handlers use ``self.log``)."""
        return logging.getLogger(type(self).__module__)

    def getRemoteCredentials(self) -> dict[str, Any]:
        """A fresh DIRAC-style ``credDict`` (``DN``, ``username``, ``group``, ``properties``, ...); ``{}`` if none."""
        return self._rpc_context.credentials()

    srv_getRemoteCredentials = getRemoteCredentials

    def getRemoteAddress(self) -> tuple[str, int] | None:
        """The caller's ``(ip, port)``."""
        return self._rpc_context.peer_address

    srv_getRemoteAddress = getRemoteAddress

    @property
    def serviceInfoDict(self) -> dict[str, Any]:
        """DIRAC's ``serviceInfoDict``: the service info plus the per-request client keys."""
        context = self._rpc_context
        info = dict(context.service_info)
        info.update(
            clientVersion=context.client_version,
            clientSetup=context.client_setup,
            clientVO=context.client_vo,
            clientAddress=context.peer_address,
            actionTuple=context.action,
        )
        return info

    def srv_getServiceName(self) -> str:
        return str(self._rpc_context.service_info.get("serviceName", ""))

    def srv_getURL(self) -> str:
        return str(self._rpc_context.service_info.get("URL", ""))

    def srv_getClientVersion(self) -> str:
        return self._rpc_context.client_version

    def srv_getClientSetup(self) -> str:
        return self._rpc_context.client_setup

    def srv_getClientVO(self) -> str:
        return self._rpc_context.client_vo

    def srv_getActionTuple(self) -> tuple[str, str]:
        return self._rpc_context.action

    @property
    def deadline(self) -> float | None:
        """The caller's deadline as a :func:`time.monotonic` timestamp, or ``None``."""
        return self._rpc_context.deadline

    def time_remaining(self) -> float | None:
        """Seconds left before the caller gives up (``None``: no deadline); long handlers can stop early."""
        return self._rpc_context.time_remaining()

    def caller_connected(self) -> bool:
        """Whether the caller's connection is still open (DISET keeps working for callers that have left)."""
        return self._rpc_context.caller_connected()

    # -- built-ins ------------------------------------------------------------------------------------------

    def export_ping(self) -> DReturn:
        """Service health in DIRAC's shape: version, time, uptimes, load, name, cpu times."""
        from rpcframework._version import __version__

        now = _utcnow()
        info: dict[str, Any] = {"version": __version__, "time": now}
        uptime = _host_uptime()
        if uptime is not None:
            info["host uptime"] = uptime
        started = self._rpc_context.service_info.get("serviceStartTime")
        if isinstance(started, datetime.datetime):
            info["service start time"] = started
            # DIRAC computes days * 3600 + seconds here; we report the real number of seconds.
            info["service uptime"] = int((now - started).total_seconds())
        load = _load_average()
        if load is not None:
            info["load"] = load
        info["name"] = self.srv_getServiceName()
        times = os.times()
        info["cpu times"] = {
            "user time": times.user,
            "system time": times.system,
            "children user time": times.children_user,
            "children system time": times.children_system,
            "elapsed real time": times.elapsed,
        }
        return S_OK(info)

    def export_whoami(self) -> DReturn:
        """The caller's credentials as the server sees them, without the certificate chain."""
        credentials = self.getRemoteCredentials()
        return S_OK({key: value for key, value in credentials.items() if key not in PRIVATE_CREDENTIAL_KEYS})

    def export_echo(self, data: Any) -> DReturn:
        """Return ``data`` unchanged (for tests and benchmarks)."""
        return S_OK(data)

    def export_describe(self) -> DReturn:
        """The service's name, version, and the methods and transfer directions the caller may call."""
        from rpcframework._version import __version__

        context = self._rpc_context
        name = str(context.service_info.get("serviceName", ""))
        return S_OK(describe_service(name, __version__, type(self)._rpc_table, context.may_call))


RequestHandler._rpc_table = compile_method_table(RequestHandler)


def initialize_handler_class(handler_cls: type[RequestHandler], service_info: Mapping[str, Any]) -> DReturn:
    """Run every ``initializeHandler`` defined along ``handler_cls``'s MRO, base first, once per service.

    Each is bound to ``handler_cls`` (so class state it sets belongs to this service) and must return ``S_OK``,
    ``S_ERROR`` or ``None``. The first failure stops the sequence; the service must then not start. The message is
    for the operator (it may contain exception text) and is never sent to a peer.
    """
    for klass in reversed(handler_cls.__mro__):
        init = vars(klass).get("initializeHandler")
        if not isinstance(init, classmethod):
            continue
        where = f"{klass.__qualname__}.initializeHandler"
        try:
            result = init.__get__(None, handler_cls)(service_info)
        except Exception as exc:
            logger.exception("%s raised while initializing %s", where, handler_cls.__qualname__)
            return S_ERROR(f"{where} failed: {type(exc).__name__}: {exc}")
        if result is None:
            continue
        if not isReturnStructure(result):
            return S_ERROR(f"{where} must return S_OK/S_ERROR or None, not {type(result).__name__}")
        if not result["OK"]:
            return S_ERROR(result, f"{where} failed")
    return S_OK()
