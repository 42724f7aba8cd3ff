"""rpcframework.server: what a service author needs, and the pure per-call logic the reactor runs.

Writing a service (see ``docs/services.md``)::

    from rpcframework.server import RequestHandler, S_OK

    class GreeterHandler(RequestHandler):
        types_greet = [str]
        auth_greet = ["authenticated"]

        def export_greet(self, name):
            return S_OK(f"hello {name}")
"""

from __future__ import annotations

from rpcframework.returnvalues import S_ERROR, S_OK, DReturn, returnValueOrRaise
from rpcframework.server.context import (
    RequestContext,
    SupportsCredentials,
    current_request,
    get_current_request,
    make_service_info,
    request_scope,
)
from rpcframework.server.dispatch import dispatch
from rpcframework.server.handler import RequestHandler, initialize_handler_class
from rpcframework.server.limits import DEFAULT_METHOD_LIMIT, MethodLimiter, MethodOverloaded
from rpcframework.server.methods import ExportedMethod, MethodTable, TransferHook
from rpcframework.server.processes import ProcessGroup
from rpcframework.server.reactor import ServiceReactor, run
from rpcframework.server.service import Service, ServiceStartError
from rpcframework.server.typecheck import HandlerDefinitionError

__all__ = [
    "DEFAULT_METHOD_LIMIT",
    "S_ERROR",
    "S_OK",
    "DReturn",
    "ExportedMethod",
    "HandlerDefinitionError",
    "MethodLimiter",
    "MethodOverloaded",
    "MethodTable",
    "ProcessGroup",
    "RequestContext",
    "RequestHandler",
    "Service",
    "ServiceReactor",
    "ServiceStartError",
    "SupportsCredentials",
    "TransferHook",
    "current_request",
    "dispatch",
    "get_current_request",
    "initialize_handler_class",
    "make_service_info",
    "request_scope",
    "returnValueOrRaise",
    "run",
]
