"""The per-call pipeline, as pure logic: method name + arguments + context in, one envelope out.

The reactor calls :func:`dispatch` once it has authorized the proposal and decoded the arguments. Everything that
can be decided at class creation already was (see :mod:`rpcframework.server.methods`); per call we look the
method up, check the arguments, build a fresh handler, run it and vet its result. ``dispatch`` never raises for
anything a peer or a handler does (only ``BaseException`` such as ``KeyboardInterrupt`` passes through), and what
it returns never contains server internals: handler exceptions are logged with their traceback under a random
reference that the caller's message quotes, so an operator can find them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any, Final

from rpcframework.protocol.messages import overload_error
from rpcframework.returnvalues import S_ERROR, DErrorReturn, DReturn, SErrorException, isReturnStructure
from rpcframework.server.context import RequestContext, reset_current_request, set_current_request
from rpcframework.server.describe import unknown_method_message
from rpcframework.server.handler import RequestHandler
from rpcframework.server.limits import MethodLimiter
from rpcframework.server.methods import ExportedMethod

logger = logging.getLogger(__name__)

#: Envelope keys that describe the server and never go back to a peer (DIRAC adds them to S_ERROR).
PRIVATE_RESULT_KEYS: Final = frozenset({"CallStack", "ExecInfo"})
#: How every message about a failure of the service itself (not of the caller's request) begins.
SERVER_ERROR_PREFIX: Final = "Server error"
#: The delay (seconds) suggested to a caller refused because the method is at its concurrency limit.
METHOD_LIMIT_RETRY_AFTER: Final = 0.5


def new_reference() -> str:
    """A short random id that ties a caller's error message to the server log entry."""
    return os.urandom(6).hex()


def _server_error(what: str, method: ExportedMethod, context: RequestContext) -> DErrorReturn:
    """Log the exception being handled with a fresh reference and return the caller's generic message."""
    reference = new_reference()
    logger.error(
        "%s (reference %s): %s.export_%s for %s",
        what,
        reference,
        method.defined_in,
        method.name,
        context.peer_address,
        exc_info=True,
    )
    return S_ERROR(f"{what} (reference {reference}); the service log has the details")


def _vet_result(method: ExportedMethod, result: object) -> DReturn:
    if not isReturnStructure(result):
        logger.error(
            "%s.export_%s returned %s instead of S_OK/S_ERROR", method.defined_in, method.name, type(result).__name__
        )
        return S_ERROR(f"Method {method.name} for action RPC does not return a S_OK/S_ERROR!")
    if result["OK"]:
        if "CallStack" in result or "ExecInfo" in result:
            return {"OK": True, "Value": result["Value"]}
        return result
    if "Errno" not in result or not PRIVATE_RESULT_KEYS.isdisjoint(result):
        cleaned: dict[str, Any] = {key: value for key, value in result.items() if key not in PRIVATE_RESULT_KEYS}
        cleaned.setdefault("Errno", 0)
        return cleaned  # type: ignore[return-value]
    return result


def _call(
    handler_cls: type[RequestHandler],
    method: ExportedMethod,
    args: Sequence[Any],
    kwargs: Mapping[str, Any] | None,
    context: RequestContext,
) -> DReturn:
    token = set_current_request(context)
    try:
        try:
            handler = handler_cls(context)
            handler.initialize()
        except Exception:
            return _server_error("Server error while loading handler", method, context)
        try:
            result = method.function(handler, *args, **kwargs) if kwargs else method.function(handler, *args)
        except SErrorException as exc:
            # returnValueOrRaise() on a failed envelope: the handler chose to pass that error on to its caller.
            return {"OK": False, "Errno": exc.errno, "Message": exc.message}
        except Exception:
            return _server_error(f"Server error while serving {method.name}", method, context)
    finally:
        reset_current_request(token)
    if type(result) is dict and len(result) == 2 and result.get("OK") is True and "Value" in result:
        return result  # type: ignore[return-value]  # a plain S_OK: _vet_result returns it unchanged
    return _vet_result(method, result)


def _argument_problem(method: ExportedMethod, args: object, kwargs: object) -> str | None:
    if not isinstance(args, list | tuple):
        # DIRAC indexes the value it received; a dict (or anything not a list) fails there with this text.
        return "Error in parameter check: 0"
    if kwargs is not None and not isinstance(kwargs, Mapping):
        return "Error in parameter check: keyword arguments must be a dict"
    return method.arguments.check(args, kwargs)


def dispatch(
    handler_cls: type[RequestHandler],
    method_name: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any] | None,
    context: RequestContext,
    *,
    limiter: MethodLimiter | None = None,
) -> DReturn:
    """Serve one RPC call and return its envelope; never raises for anything a peer or a handler does.

    ``args`` is the decoded argument value (DISET sends a list; anything else is refused with DIRAC's
    ``"Error in parameter check: 0"``). ``kwargs`` is our extension (``None`` for a DIRAC peer). With a
    ``limiter``, a method with no free slot is answered at once with an ``EOVERLOAD`` error.
    """
    method = handler_cls._rpc_table.methods.get(method_name) if isinstance(method_name, str) else None
    if method is None:
        # DIRAC's text, the peer's name escaped and cut, and the closest methods this caller may call.
        return S_ERROR(unknown_method_message(method_name, handler_cls._rpc_table.methods, context.may_call))
    # A DISET call (a list, no keyword arguments) needs only the method's own check of _argument_problem.
    if type(args) is list and kwargs is None:
        problem = method.arguments.check(args, None)
    else:
        problem = _argument_problem(method, args, kwargs)
    if problem is not None:
        return S_ERROR(problem)
    if limiter is None:
        return _call(handler_cls, method, args, kwargs, context)
    slots = limiter.slots_by_key.get(method.limit_key)
    if slots is None:  # an unlimited method: what acquire() and release() do for it
        return _call(handler_cls, method, args, kwargs, context)
    if not slots.try_take():  # limiter.acquire(key) with its default timeout of 0, without the extra frame
        # Nothing ran: the refusal says so (RetryAfter), and the client may retry after that delay.
        return overload_error(limiter.overloaded_error(method.limit_key), METHOD_LIMIT_RETRY_AFTER)
    try:
        return _call(handler_cls, method, args, kwargs, context)
    finally:
        slots.give_back()
