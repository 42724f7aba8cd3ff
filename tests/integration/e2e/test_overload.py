"""An overloaded server ran nothing, so the client retries (issue 12.9): after the server's suggested delay with
jitter, within the call's deadline, preferring another URL, only as far as ``retries`` allows; never a call that a
handler answered with "overloaded" itself. Real reactors over real TLS, on both back ends.

The client's pauses go through an injected ``sleep`` (``RPCClient(sleep=...)``) that records them and lets the held
call finish: nothing here waits on, or asserts about, the wall clock.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest
from support.e2e_kit import Creds, raw_stream
from support.waiting import wait_for
from support.wire import frame, read_until_closed

from rpcframework.client import Retry
from rpcframework.client.rpcclient import RPCClient
from rpcframework.returnvalues import EOVERLOAD, S_ERROR, S_OK, DReturn
from rpcframework.server import RequestHandler, Service, ServiceReactor

pytestmark = pytest.mark.timeout(60)

NAME = "Demo/Busy"
BACKENDS = ["pyopenssl", "m2crypto"]
#: The delay our server suggests for a method at its limit (server.dispatch.METHOD_LIMIT_RETRY_AFTER).
METHOD_LIMIT_RETRY_AFTER = 0.5


class BusyHandler(RequestHandler):
    """``hold(True)`` blocks until the test releases it; every method counts its executions."""

    release: ClassVar[threading.Event] = threading.Event()
    executions: ClassVar[Counter[str]] = Counter()
    served_by: ClassVar[list[str]] = []
    lock: ClassVar[threading.Lock] = threading.Lock()

    def initialize(self) -> None:
        with self.lock:
            self.executions[self.srv_getActionTuple()[1]] += 1

    types_hold: ClassVar[list[Any]] = [bool]
    auth_hold: ClassVar[list[str]] = ["authenticated"]

    def export_hold(self, block: bool) -> DReturn:
        """With ``block``, keep the method's only slot until the test releases it."""
        return S_OK(self.release.wait(20) if block else self.srv_getURL())

    types_where: ClassVar[list[Any]] = []
    auth_where: ClassVar[list[str]] = ["authenticated"]

    def export_where(self) -> DReturn:
        with self.lock:
            self.served_by.append(self.srv_getURL())
        return S_OK(self.srv_getURL())

    types_pass_on: ClassVar[list[Any]] = []
    auth_pass_on: ClassVar[list[str]] = ["authenticated"]

    def export_pass_on(self) -> DReturn:
        """A handler that did its work and passes on another service's overload refusal: must not be rerun."""
        return S_ERROR(EOVERLOAD, "the downstream service is busy")


@pytest.fixture
def busy(creds: Creds) -> Iterator[Callable[..., ServiceReactor]]:
    """``busy(backend, **service_options)``: a reactor serving :class:`BusyHandler`, stopped afterwards."""
    BusyHandler.release.clear()
    BusyHandler.executions.clear()
    BusyHandler.served_by.clear()
    started: list[ServiceReactor] = []

    def start(backend: str, **options: Any) -> ServiceReactor:
        options.setdefault("method_limits", {"RPC/hold": 1, "RPC/where": 1})
        service = Service(NAME, BusyHandler, config=creds.config(), port=0, **options)
        reactor = ServiceReactor([service], host="127.0.0.1", backend=backend, tls=creds.server_tls())
        started.append(reactor.start())
        return reactor

    yield start
    BusyHandler.release.set()
    for reactor in started:
        reactor.stop(timeout=5)


class RecordingSleep:
    """The client's ``sleep``: records each pause and, at the first one, lets the held call finish."""

    def __init__(self, on_first: Callable[[], None] | None = None) -> None:
        self.pauses: list[float] = []
        self._on_first = on_first

    def __call__(self, seconds: float) -> None:
        self.pauses.append(seconds)
        if len(self.pauses) == 1 and self._on_first is not None:
            self._on_first()


def _client(creds: Creds, url: str, backend: str, sleep: Callable[[float], None], **options: Any) -> RPCClient:
    options.setdefault("timeout", 20)
    return RPCClient(
        url, sleep=sleep, proxyLocation=str(creds.user.proxy_file), config=creds.config(), backend=backend, **options
    )


def _hold_in_background(creds: Creds, url: str, backend: str) -> tuple[threading.Thread, dict[str, DReturn]]:
    """A call that holds ``hold``'s only slot until ``BusyHandler.release`` is set."""
    box: dict[str, DReturn] = {}

    def run() -> None:
        with _client(creds, url, backend, RecordingSleep()) as holder:
            box["result"] = holder.hold(True)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_for(lambda: BusyHandler.executions["hold"] == 1)
    return thread, box


def _release_and_wait(holder: threading.Thread) -> Callable[[], None]:
    def release() -> None:
        BusyHandler.release.set()
        holder.join(10)

    return release


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_call_refused_at_a_method_limit_is_retried_after_the_servers_delay(creds, busy, backend):
    url = busy(backend).url(NAME)
    holder, held = _hold_in_background(creds, url, backend)
    sleep = RecordingSleep(on_first=_release_and_wait(holder))
    with _client(creds, url, backend, sleep, retries=Retry(total=5)) as client:
        result = client.hold(False)
    assert result["OK"], result
    assert held["result"]["OK"]
    # The refused attempt ran nothing; the retry ran once, after at least the suggested delay.
    assert BusyHandler.executions["hold"] == 2
    assert sleep.pauses and sleep.pauses[0] >= METHOD_LIMIT_RETRY_AFTER
    assert "RetryAfter" not in result


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_call_refused_by_a_full_worker_queue_is_retried(creds, busy, backend):
    reactor = busy(backend, max_threads=1, max_waiting_petitions=1, method_limits={})
    url = reactor.url(NAME)
    holder, _ = _hold_in_background(creds, url, backend)  # the only worker
    queued_box: dict[str, DReturn] = {}

    def queued() -> None:
        with _client(creds, url, backend, RecordingSleep()) as other:
            queued_box["result"] = other.where()

    queued_thread = threading.Thread(target=queued, daemon=True)
    queued_thread.start()
    wait_for(lambda: reactor._pools[NAME].waiting == 1)  # the only queue slot

    def release() -> None:
        BusyHandler.release.set()
        holder.join(10)
        queued_thread.join(10)

    sleep = RecordingSleep(on_first=release)
    with _client(creds, url, backend, sleep, retries=Retry(total=5)) as client:
        result = client.where()
    assert result["OK"], result
    assert queued_box["result"]["OK"]
    assert BusyHandler.executions["where"] == 2  # the queued call and the retried one; the refused one ran nothing
    assert sleep.pauses and sleep.pauses[0] >= 0.5  # the reactor suggests at least 0.5 s


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_overloaded_url_is_left_for_another_at_once(creds, busy, backend):
    first, second = busy(backend).url(NAME), busy(backend).url(NAME)
    # Primary first, then the failover URL: the order is deterministic.
    demo = {"URLs": {"Busy": first}, "FailoverURLs": {"Busy": second}}
    holder, _ = _hold_in_background(creds, first, backend)
    sleep = RecordingSleep()
    client = RPCClient(
        NAME,
        sleep=sleep,
        proxyLocation=str(creds.user.proxy_file),
        config=creds.config(Demo=demo),
        backend=backend,
        retries=Retry(total=3),
        timeout=20,
    )
    with client:
        result = client.hold(False)  # the first URL's only slot is taken: the second serves it
    BusyHandler.release.set()
    holder.join(10)
    assert result["OK"] and result["Value"] == second, result
    assert BusyHandler.executions["hold"] == 2  # the held call on the first URL and this one on the second
    assert all(pause == 0 for pause in sleep.pauses)  # no wait: another URL was free


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_retry_budget_returns_the_overload_at_once(creds, busy, backend):
    url = busy(backend).url(NAME)
    _hold_in_background(creds, url, backend)
    sleep = RecordingSleep()
    with _client(creds, url, backend, sleep, retries=Retry(total=0)) as client:
        result = client.hold(False)
    assert not result["OK"] and result["Errno"] == EOVERLOAD, result
    assert "RetryAfter" not in result  # callers get DIRAC's keys only
    assert sleep.pauses == []
    assert BusyHandler.executions["hold"] == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_overload_that_does_not_fit_in_the_deadline_is_returned(creds, busy, backend):
    url = busy(backend).url(NAME)
    _hold_in_background(creds, url, backend)
    sleep = RecordingSleep()
    # A backoff_max below the server's suggestion: the client will not come back earlier than asked.
    retry = Retry(total=5, backoff_max=METHOD_LIMIT_RETRY_AFTER / 2)
    with _client(creds, url, backend, sleep, retries=retry) as client:
        result = client.hold(False)
    assert not result["OK"] and result["Errno"] == EOVERLOAD, result
    assert sleep.pauses == []
    assert BusyHandler.executions["hold"] == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_handler_passing_on_an_overload_is_not_rerun(creds, busy, backend):
    url = busy(backend).url(NAME)
    sleep = RecordingSleep()
    with _client(creds, url, backend, sleep, retries=Retry(total=5)) as client:
        result = client.pass_on()
    assert not result["OK"] and result["Errno"] == EOVERLOAD, result
    assert BusyHandler.executions["pass_on"] == 1  # it ran: no RetryAfter mark, no retry
    assert sleep.pauses == []


def test_a_dirac_client_sees_the_suggestion_as_one_more_key(creds, busy):
    """On the wire: DIRAC's S_ERROR with one extra key (DIRAC itself adds CallStack; its clients ignore extra keys)."""
    url = busy("pyopenssl").url(NAME)
    _hold_in_background(creds, url, "pyopenssl")
    stream = raw_stream(url, creds)
    try:
        proposal = b'{"OK": true, "Value": [["Demo/Busy", "None", "unknown"], ["RPC", "hold"], "", "9.1.22"]}'
        stream.send_all(frame(proposal) + frame(b'{"OK": true, "Value": [false]}'))
        received, _ = read_until_closed(stream)
    finally:
        stream.close()
    assert received.startswith(b'27:{"OK": true, "Value": null}')
    reply = json.loads(received[len(b'27:{"OK": true, "Value": null}') :].split(b":", 1)[1])
    assert list(reply) == ["OK", "Errno", "Message", "RetryAfter"]
    assert reply["Errno"] == EOVERLOAD and reply["RetryAfter"] == METHOD_LIMIT_RETRY_AFTER
    assert BusyHandler.executions["hold"] == 1
