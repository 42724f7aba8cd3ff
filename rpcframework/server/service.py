"""``Service``: one ``System/Component`` — its handler class, settings, limits and authorization decision.

The reactor owns sockets and threads; a :class:`Service` owns everything that is about the service itself:

* the handler class and its compiled :class:`~rpcframework.server.methods.MethodTable`;
* the settings read from the configuration (``MaxThreads``, ``MaxWaitingPetitions``, ``Authorization/*``), re-read
  from each new configuration snapshot so rule changes apply without a restart;
* ``initializeHandler`` run once by :meth:`start` (a failure stops the service from starting);
* one :class:`~rpcframework.server.limits.MethodLimiter` for per-method concurrency;
* :meth:`authorize`: who is calling and may they (deny by default), answered to a refused peer as DIRAC's
  ``S_ERROR(1111, "Unauthorized query")`` plus a reason in user terms, never a server stack;
* :meth:`request_context` and :meth:`call`: the per-request context and the dispatch of one call.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rpcframework.config.settings import ServiceSettings, read_service_settings, virtual_organization
from rpcframework.config.store import ConfigStore
from rpcframework.config.tree import ConfigTree
from rpcframework.config.urls import parse_system_component
from rpcframework.errors import ConfigurationError
from rpcframework.observability.events import UNKNOWN, CallOutcome, ServerCall, ServerObserver
from rpcframework.protocol.messages import ActionType, FileInfo, Proposal, overload_error
from rpcframework.returnvalues import (
    ENOAUTH,
    EOVERLOAD,
    S_ERROR,
    DErrorReturn,
    DReturn,
    SErrorException,
    isReturnStructure,
)
from rpcframework.security.authz import (
    AccessDenied,
    AuthRule,
    Caller,
    anonymous_caller,
    authorize,
    resolve_caller,
    select_rule,
)
from rpcframework.security.registry import Registry
from rpcframework.server.context import RequestContext, make_service_info, reset_current_request, set_current_request
from rpcframework.server.describe import quote_name, unknown_method_message
from rpcframework.server.dispatch import SERVER_ERROR_PREFIX, dispatch, new_reference
from rpcframework.server.handler import RequestHandler, initialize_handler_class
from rpcframework.server.limits import DEFAULT_METHOD_LIMIT, MethodLimiter, TransferSlots

__all__ = ["Service", "ServiceStartError"]

logger = logging.getLogger(__name__)

#: Seconds a client refused a transfer slot is told to wait before it tries again.
TRANSFER_RETRY_AFTER = 1.0
#: Compiled authorization rules kept per snapshot (one per exported method or transfer direction in practice).
_MAX_CACHED_RULES = 1024


class ServiceStartError(ConfigurationError):
    """A service could not start (``initializeHandler`` failed, bad settings); the message says why."""


class Service:
    """One ``System/Component`` served by a :class:`~rpcframework.server.reactor.ServiceReactor`.

    ``config`` is a :class:`ConfigStore` (reloaded settings apply to later calls) or a fixed :class:`ConfigTree`;
    without one, an empty tree (DIRAC defaults, no registry: only ``all`` rules admit anyone). Keyword arguments
    override the configuration: ``port``, ``protocol`` (``"dips"``/``"dip"``), ``max_threads``,
    ``max_waiting_petitions``. ``default_rule`` is the handler's declared default rule (used after the
    configuration's ``Authorization/Default``); ``method_limits`` maps ``"RPC/<method>"`` to its concurrency
    limit, others get ``default_method_limit``.
    """

    def __init__(
        self,
        name: str,
        handler: type[RequestHandler],
        *,
        config: ConfigStore | ConfigTree | None = None,
        port: int | None = None,
        protocol: str | None = None,
        max_threads: int | None = None,
        max_waiting_petitions: int | None = None,
        default_rule: Sequence[str] | None = None,
        method_limits: Mapping[str, int | None] | None = None,
        default_method_limit: int | None = DEFAULT_METHOD_LIMIT,
    ) -> None:
        system, component = parse_system_component(name)
        self.name = f"{system}/{component}"
        if not (isinstance(handler, type) and issubclass(handler, RequestHandler)):
            raise ServiceStartError(f"{self.name}: the handler must be a RequestHandler subclass, not {handler!r}")
        self.handler = handler
        self.table = handler.method_table()
        self._config = config if config is not None else ConfigTree()
        settings = read_service_settings(self.config_tree(), self.name)
        self.port = settings.port if port is None else port
        self.protocol = (protocol or settings.protocol).lower()
        if self.protocol not in ("dips", "dip"):
            raise ServiceStartError(f"{self.name}: protocol must be dips or dip, not {self.protocol!r}")
        self.max_threads = _positive("max_threads", max_threads, settings.max_threads)
        self.max_waiting_petitions = _positive(
            "max_waiting_petitions", max_waiting_petitions, settings.max_waiting_petitions
        )
        #: ``CloneProcesses``: worker processes wanted for this service (0 or 1: one; see server/processes.py).
        self.clone_processes = settings.clone_processes
        self.default_rule = tuple(default_rule) if default_rule is not None else None
        # The compiled rule of each action key under one snapshot (and default rule): see _rule_for.
        self._rules: tuple[ConfigTree | None, object, dict[str, AuthRule | None]] = (None, None, {})
        self.limiter = MethodLimiter.for_table(self.table, method_limits, default=default_method_limit)
        #: File transfers running now, in total and per identity (``MaxTransfers``, ``MaxTransfersPerIdentity``).
        self.transfer_slots = TransferSlots()
        self.section = settings.section
        self.service_info: Mapping[str, Any] = make_service_info(self.name, section_path=settings.section)
        self.started = False
        #: Told about every call (metrics, tracing); set by the reactor's ``observer=``. ``None``: nothing reported.
        self.observer: ServerObserver | None = None

    def __repr__(self) -> str:
        return f"<Service {self.name} handler={self.table.handler} port={self.port} {self.protocol}>"

    # -- configuration ----------------------------------------------------------------------------------------

    def config_tree(self) -> ConfigTree:
        """The current configuration snapshot (a reload swaps it; each call sees one consistent tree)."""
        config = self._config
        return config.snapshot() if isinstance(config, ConfigStore) else config

    def settings(self, tree: ConfigTree | None = None) -> ServiceSettings:
        """This service's settings in ``tree`` (default: the current snapshot), read once per snapshot."""
        tree = tree or self.config_tree()
        return tree.cached(f"rpcframework.server.service:{self.name}", lambda t: read_service_settings(t, self.name))

    # -- lifecycle --------------------------------------------------------------------------------------------

    def start(self, url: str = "") -> None:
        """Run the handler's ``initializeHandler`` chain once; raise :class:`ServiceStartError` if it fails."""
        if self.started:
            return
        self.service_info = make_service_info(self.name, url=url, section_path=self.section)
        result = initialize_handler_class(self.handler, self.service_info)
        if not result["OK"]:
            raise ServiceStartError(f"service {self.name} cannot start: {result['Message']}")
        self.started = True
        logger.info("service %s initialized (%s)", self.name, self.table.handler)

    # -- per request ------------------------------------------------------------------------------------------

    def authorize(
        self, proposal: Proposal, peer_dn: str | None, proxy_group: str | None = None
    ) -> Caller | DErrorReturn:
        """The caller of ``proposal`` if it may proceed, else the refusal to send (never raises for a peer).

        ``proxy_group`` is the DIRAC group the peer's verified proxy names (``PeerIdentity.dirac_group``).

        A method (or a transfer direction) the handler does not export is refused here, before the caller may send
        its arguments (issue 12.5: DIRAC acks first and reads them, which let anyone make the server hold an
        argument frame): with DIRAC's ``"Unknown method <name>"``, naming only methods this caller may call.
        """
        tree = self.config_tree()
        action = proposal.action_type
        name = proposal.action_name
        key = name if action is ActionType.RPC else f"{action.value}/{name}"
        try:
            caller = resolve_caller(peer_dn, proxy_group, proposal.extra_credentials, Registry.for_config(tree))
            refusal = self._not_exported(caller, action, name)
            if refusal is not None:
                return refusal
            self._authorize_action(caller, action.value, name, tree)
        except AccessDenied as exc:
            # %r: the DN, group and method come from the peer; repr escapes anything that could forge a log line.
            logger.warning("Unauthorized query to %s:%r by %r: %r", self.name, key, peer_dn or "anonymous", exc.reason)
            return S_ERROR(ENOAUTH, str(exc))
        return caller

    def _not_exported(self, caller: Caller, action: ActionType, name: str) -> DErrorReturn | None:
        """The refusal of an action the handler does not export (``None``: it does)."""
        if action is ActionType.RPC:
            if name in self.table.methods:
                return None
            return S_ERROR(unknown_method_message(name, self.table.methods, functools.partial(self.permits, caller)))
        if action is ActionType.FileTransfer and name not in self.table.transfers:
            direction = quote_name(name)
            return S_ERROR(f"Service can't transfer files {direction[:1].lower()}{direction[1:]}")
        return None

    def _authorize_action(self, caller: Caller, action: str, name: str, tree: ConfigTree) -> None:
        """Raise :class:`AccessDenied` unless ``caller`` may perform ``(action, name)``: the one decision both a
        proposal and ``describe``'s filtering go through."""
        key = name if action == ActionType.RPC.value else f"{action}/{name}"
        authorize(caller, self._rule_for(key, action, name, tree), method=key)

    def _rule_for(self, key: str, action: str, name: str, tree: ConfigTree) -> AuthRule | None:
        """The rule ``select_rule`` gives for ``key`` under ``tree``, compiled once per snapshot (not per
        connection: a DIRAC client's every call is a new connection, hence a new proposal to authorize)."""
        cache = self._rules
        if cache[0] is not tree or cache[1] is not self.default_rule:
            cache = (tree, self.default_rule, {})
            self._rules = cache  # a reload starts a new table; a thread still on the old snapshot keeps its own
        rules = cache[2]
        if key in rules:
            return rules[key]
        rule = select_rule(
            key,
            configured=self.settings(tree).authorization,
            handler_rule=self.table.auth_rule(action, name),
            handler_default=self.default_rule,
        )
        if len(rules) < _MAX_CACHED_RULES:  # keys are exported names in practice; the bound is for any others
            rules[key] = rule
        return rule

    def take_transfer_slot(self, identity: str) -> DErrorReturn | None:
        """Take a transfer slot for ``identity`` (a DN, or an address); the refusal to send when none is free.
        Nothing has run, so the refusal says the client may retry (``RetryAfter``)."""
        limit, per_identity = self.settings().transfer_limits(self.max_threads)
        reason = self.transfer_slots.take(identity, limit, per_identity)
        if reason is None:
            return None
        logger.info("%s: refused a transfer for %r: %s", self.name, identity, reason)
        return overload_error(S_ERROR(EOVERLOAD, f"{self.name}: {reason}; retry later"), TRANSFER_RETRY_AFTER)

    def permits(self, caller: Caller | None, action: str, name: str) -> bool:
        """Whether ``caller`` (already resolved by :meth:`authorize`, so delegation is applied) may perform
        ``(action, name)`` under the current configuration; ``None`` counts as anonymous."""
        exported = self.table.methods if action == ActionType.RPC.value else self.table.transfers
        if name not in exported:
            return False
        try:
            self._authorize_action(caller or anonymous_caller(), action, name, self.config_tree())
        except AccessDenied:
            return False
        return True

    def request_context(
        self,
        proposal: Proposal,
        caller: Caller | None,
        *,
        peer_identity: Any,
        peer_address: tuple[str, int] | None,
        deadline: float | None = None,
        is_connected: Callable[[], bool] | None = None,
    ) -> RequestContext:
        """What the handler will see about this request."""
        vo = proposal.vo
        if not vo:
            vo = virtual_organization(self.config_tree())
        return RequestContext(
            caller=caller,
            peer_identity=peer_identity,
            extra_credentials=proposal.extra_credentials.to_wire(),
            peer_address=peer_address,
            service_info=self.service_info,
            action=(proposal.action_type.value, proposal.action_name),
            client_version=proposal.client_version or "",
            client_setup=proposal.setup,
            client_vo=vo,
            deadline=deadline,
            is_connected=is_connected,
            may_call=functools.partial(self.permits, caller),
            trace_context=None if proposal.trace_context is None else proposal.trace_context.as_carrier(),
        )

    def call(
        self, method: str, args: Sequence[Any], kwargs: Mapping[str, Any] | None, context: RequestContext
    ) -> DReturn:
        """Run one call through the dispatch pipeline (argument checks, per-method limit, handler, result vetting)."""
        observer = self.observer
        if observer is None:
            return dispatch(self.handler, method, args, kwargs or None, context, limiter=self.limiter)
        return self._observed_call(observer, method, args, kwargs, context)

    def method_label(self, method: object) -> str:
        """``method`` as a metrics label: an exported method's name, else ``"unknown"`` (never a peer's text)."""
        return method if isinstance(method, str) and method in self.table.methods else UNKNOWN

    def _observed_call(
        self,
        observer: ServerObserver,
        method: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any] | None,
        context: RequestContext,
    ) -> DReturn:
        call = ServerCall(self.name, self.method_label(method), "RPC", _where(context), context.trace_context)
        token = observer.call_started(call)
        started = time.perf_counter()
        outcome = CallOutcome.ERROR
        errno: int | None = None
        try:
            result = dispatch(self.handler, method, args, kwargs or None, context, limiter=self.limiter)
            outcome, errno = classify_result(result)
            if errno == EOVERLOAD and outcome is CallOutcome.REFUSED:
                observer.overloaded(self.name)
            return result
        finally:
            observer.call_finished(call, token, outcome, errno, time.perf_counter() - started)

    def transfer(self, direction: str, info: FileInfo, helper: Any, context: RequestContext) -> DReturn:
        """Run the ``transfer_<hook>`` of ``direction`` with DIRAC's arguments (``fileId, token[, size], helper``);
        never raises for anything a peer or a handler does."""
        hook = self.table.transfers.get(direction)
        if hook is None:
            return S_ERROR(f"Service can't transfer files {direction[:1].lower()}{direction[1:]}")
        args: list[Any] = [info.file_id, info.token]
        if direction in ("FromClient", "BulkFromClient"):
            args.append(info.size if info.size is not None else -1)
        args.append(helper)
        if not self.limiter.acquire(hook.limit_key):
            return self.limiter.overloaded_error(hook.limit_key)
        token = set_current_request(context)
        try:
            handler = self.handler(context)
            handler.initialize()
            result = hook.function(handler, *args)
        except SErrorException as exc:
            return {"OK": False, "Errno": exc.errno, "Message": exc.message}
        except Exception:
            reference = new_reference()
            logger.error(
                "transfer %s failed (reference %s) in %s", direction, reference, hook.defined_in, exc_info=True
            )
            return S_ERROR(f"Server error during the transfer (reference {reference}); the service log has the details")
        finally:
            reset_current_request(token)
            self.limiter.release(hook.limit_key)
        if not isReturnStructure(result):
            logger.error("%s.transfer hook for %s did not return S_OK/S_ERROR", hook.defined_in, direction)
            return S_ERROR(f"Transfer hook for {direction} does not return a S_OK/S_ERROR!")
        return result


_BAD_RETURN = "does not return a S_OK/S_ERROR!"


def classify_result(result: DReturn) -> tuple[CallOutcome, int | None]:
    """The outcome label and ``Errno`` of a call's envelope (a per-method limit's refusal counts as refused)."""
    if result["OK"]:
        return CallOutcome.OK, None
    errno = result.get("Errno")
    number = errno if type(errno) is int else 0
    if number == EOVERLOAD:
        return CallOutcome.REFUSED, number
    message = result.get("Message")
    if (
        number == 0
        and isinstance(message, str)
        and (message.startswith(SERVER_ERROR_PREFIX) or message.endswith(_BAD_RETURN))
    ):
        return CallOutcome.ERROR, number
    return CallOutcome.S_ERROR, number


def _where(context: RequestContext) -> str | None:
    address = context.peer_address
    return f"{address[0]}:{address[1]}" if address else None


def _positive(what: str, value: int | None, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ServiceStartError(f"{what} must be a positive integer, not {value!r}")
    return value


def watch_configuration(
    services: Sequence[Service], extra: Callable[[ConfigTree], object] | None = None
) -> Callable[[], None]:
    """Reload the services' configuration stores on their own threads, building each new snapshot's registry and
    service settings (and ``extra(tree)``) there before it is swapped in, so that the thread serving connections
    never reads files or parses configuration. Returns a function that stops it."""
    undo: list[Callable[[], None]] = []
    stores = {id(service._config): service._config for service in services}
    for store in stores.values():
        if not isinstance(store, ConfigStore):
            continue
        members = [service for service in services if service._config is store]

        def prepare(tree: ConfigTree, members: list[Service] = members) -> None:
            Registry.for_config(tree)
            for service in members:
                service.settings(tree)
            if extra is not None:
                extra(tree)

        undo.append(store.add_preparer(prepare))
        undo.append(store.watch())

    def stop() -> None:
        for step in reversed(undo):
            step()

    return stop
