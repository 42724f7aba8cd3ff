"""The per-call pipeline: fresh instances, errors that say nothing about the server, and the request context."""

# DISET's convention is a class-level list for types_/auth_; the framework copies them, never mutates them.

from __future__ import annotations

import logging
import re
import threading
from typing import Any, ClassVar

import pytest

from rpcframework.returnvalues import S_ERROR, SErrorException, returnValueOrRaise
from rpcframework.server import (
    S_OK,
    RequestContext,
    RequestHandler,
    current_request,
    dispatch,
    get_current_request,
    request_scope,
)
from rpcframework.server.context import reset_current_request, set_current_request

REFERENCE = re.compile(r"\(reference ([0-9a-f]{12})\); the service log has the details$")


class Handler(RequestHandler):
    instances: ClassVar[list[int]] = []

    def initialize(self) -> None:
        self.counter = 0
        type(self).instances.append(id(self))

    types_bump: ClassVar[list[Any]] = []

    def export_bump(self) -> Any:
        self.counter += 1
        return S_OK(self.counter)

    types_boom: ClassVar[list[Any]] = []

    def export_boom(self) -> Any:
        raise RuntimeError("internal detail at /srv/secret/path.py")

    types_raw = [None]

    def export_raw(self, value: Any) -> Any:
        return value

    types_passon: ClassVar[list[Any]] = []

    def export_passon(self) -> Any:
        return returnValueOrRaise(S_ERROR(1111, "Unauthorized query"))

    types_whereami: ClassVar[list[Any]] = []

    def export_whereami(self) -> Any:
        return S_OK(helper_deep_inside())


def helper_deep_inside() -> Any:
    return current_request().client_version


class BrokenInit(RequestHandler):
    def initialize(self) -> None:
        raise ValueError("cannot open /etc/db.conf")


def test_fresh_instance_and_initialize_per_call(context: RequestContext) -> None:
    Handler.instances.clear()
    first = dispatch(Handler, "bump", [], None, context)
    second = dispatch(Handler, "bump", [], None, context)
    assert first == second == {"OK": True, "Value": 1}
    assert len(Handler.instances) == 2


def test_handler_exception_gives_a_reference_and_logs_the_traceback(
    context: RequestContext, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="rpcframework.server.dispatch"):
        result = dispatch(Handler, "boom", [], None, context)
    assert result["OK"] is False
    assert result["Errno"] == 0
    message = result["Message"]
    assert message.startswith("Server error while serving boom (reference ")
    match = REFERENCE.search(message)
    assert match is not None
    assert "internal detail" not in message and "/srv" not in message and "RuntimeError" not in message
    assert set(result) == {"OK", "Errno", "Message"}
    (record,) = caplog.records
    assert match.group(1) in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError
    assert "internal detail at /srv/secret/path.py" in caplog.text


def test_each_failure_gets_its_own_reference(context: RequestContext) -> None:
    first = dispatch(Handler, "boom", [], None, context)["Message"]
    second = dispatch(Handler, "boom", [], None, context)["Message"]
    assert first != second


def test_initialize_failure(context: RequestContext, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        result = dispatch(BrokenInit, "echo", ["x"], None, context)
    assert result["Message"].startswith("Server error while loading handler (reference ")
    assert "db.conf" not in result["Message"]
    assert "cannot open /etc/db.conf" in caplog.text


@pytest.mark.parametrize("value", [None, 5, "OK", {"OK": True}, {"OK": False}, {"OK": 1, "Value": 2}, [True, 1]])
def test_result_that_is_not_an_envelope(context: RequestContext, value: Any) -> None:
    assert dispatch(Handler, "raw", [value], None, context) == {
        "OK": False,
        "Errno": 0,
        "Message": "Method raw for action RPC does not return a S_OK/S_ERROR!",
    }


def test_callstack_and_execinfo_are_stripped(context: RequestContext) -> None:
    dirac_error = {"OK": False, "Errno": 5, "Message": "x", "CallStack": ["  File /srv/a.py"], "ExecInfo": (1, 2)}
    assert dispatch(Handler, "raw", [dirac_error], None, context) == {"OK": False, "Errno": 5, "Message": "x"}
    ok = {"OK": True, "Value": 1, "CallStack": ["/srv"]}
    assert dispatch(Handler, "raw", [ok], None, context) == {"OK": True, "Value": 1}
    assert "CallStack" in dirac_error  # the handler's own object is not modified


def test_errno_is_added_to_an_error_without_one(context: RequestContext) -> None:
    assert dispatch(Handler, "raw", [{"OK": False, "Message": "m"}], None, context) == {
        "OK": False,
        "Message": "m",
        "Errno": 0,
    }


def test_clean_envelope_passes_through_untouched(context: RequestContext) -> None:
    envelope = {"OK": False, "Errno": 3, "Message": "m"}
    assert dispatch(Handler, "raw", [envelope], None, context) is envelope


def test_raised_serror_is_passed_on(context: RequestContext) -> None:
    assert dispatch(Handler, "passon", [], None, context) == {
        "OK": False,
        "Errno": 1111,
        "Message": "Unauthorized query ( 1111 : Unauthorized query)",
    }
    assert isinstance(SErrorException(S_ERROR("x")), Exception)


def test_non_string_method_name(context: RequestContext) -> None:
    assert dispatch(Handler, 5, [], None, context) == {"OK": False, "Errno": 0, "Message": "Unknown method 5"}  # type: ignore[arg-type]


def test_dotted_and_prefixed_names_are_unknown(context: RequestContext) -> None:
    for name in ("a.b", "export_echo", "types_echo", "initialize", "__init__", "_rpc_table", "transfer_fromClient"):
        assert dispatch(Handler, name, [], None, context)["Message"] == f"Unknown method {name}"


def test_base_exceptions_are_not_swallowed(context: RequestContext) -> None:
    class Stop(RequestHandler):
        types_stop: ClassVar[list[Any]] = []

        def export_stop(self) -> Any:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        dispatch(Stop, "stop", [], None, context)
    assert get_current_request() is None


# -- the request context -------------------------------------------------------------------------------------------


def test_context_is_visible_deep_inside_and_reset_after(context: RequestContext) -> None:
    assert get_current_request() is None
    assert dispatch(Handler, "whereami", [], None, context) == {"OK": True, "Value": "9.1.22"}
    assert get_current_request() is None
    with pytest.raises(LookupError):
        current_request()


def test_context_is_reset_when_the_handler_raises(context: RequestContext) -> None:
    dispatch(Handler, "boom", [], None, context)
    assert get_current_request() is None
    dispatch(BrokenInit, "echo", ["x"], None, context)
    assert get_current_request() is None


def test_context_nests_and_restores_the_outer_value(context: RequestContext) -> None:
    outer = RequestContext(client_version="outer")
    with request_scope(outer):
        assert dispatch(Handler, "whereami", [], None, context)["Value"] == "9.1.22"
        assert current_request() is outer
    token = set_current_request(outer)
    reset_current_request(token)
    assert get_current_request() is None


def test_concurrent_threads_each_see_their_own_context() -> None:
    class Slow(RequestHandler):
        types_who: ClassVar[list[Any]] = []

        def export_who(self) -> Any:
            barrier.wait(timeout=10)  # all 32 calls are inside their handlers at once
            return S_OK(current_request().client_version)

    barrier = threading.Barrier(32)
    results: dict[int, Any] = {}

    def run(index: int) -> None:
        results[index] = dispatch(Slow, "who", [], None, RequestContext(client_version=f"v{index}"))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert results == {i: {"OK": True, "Value": f"v{i}"} for i in range(32)}
