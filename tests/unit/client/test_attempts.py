"""RPCClient's attempt loop: the one-URL fast path (first attempt without a plan) counts and retries exactly like
the general loop over several URLs."""

from __future__ import annotations

from typing import Any

import pytest

from rpcframework.client.inner import Attempt
from rpcframework.client.policy import CallPhase
from rpcframework.client.rpcclient import RPCClient
from rpcframework.errors import ConnectionClosedError, TransportError

ONE = "dip://127.0.0.1:1/Sys/Comp"
TWO = "dip://127.0.0.1:1/Sys/Comp,dip://127.0.0.1:2/Sys/Comp"


def _scripted(rpc: RPCClient, outcomes: list[Any], seen: list[str], phase: CallPhase = CallPhase.CONNECTING) -> None:
    """Replace the per-URL call: each attempt pops the next outcome (an exception to raise or a result)."""

    def call_url(
        endpoint: Any, method: str, args: Any, kwargs: Any, *, deadline: Any, attempt: Attempt, record: Any = None
    ) -> Any:
        seen.append(endpoint.url)
        attempt.phase = phase
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    rpc._call_url = call_url  # type: ignore[method-assign]


@pytest.mark.parametrize("url", [ONE, TWO])
def test_first_attempt_success(url: str) -> None:
    rpc = RPCClient(url, sleep=lambda _: None)
    seen: list[str] = []
    _scripted(rpc, [{"OK": True, "Value": 1}], seen)
    assert rpc.call("m", (), {}, timeout=5) == {"OK": True, "Value": 1}
    assert len(seen) == 1


@pytest.mark.parametrize("url", [ONE, TWO])
def test_failures_before_the_arguments_are_retried_within_the_budget(url: str) -> None:
    pauses: list[float] = []
    rpc = RPCClient(url, retries=2, sleep=pauses.append)
    seen: list[str] = []
    _scripted(rpc, [TransportError("a"), TransportError("b"), {"OK": True, "Value": 2}], seen)
    assert rpc.call("m", (), {}, timeout=5) == {"OK": True, "Value": 2}
    assert len(seen) == 3
    if url == ONE:
        assert seen == [ONE] * 3
        assert rpc.base.selector.banned() == {}  # the success lifted the ban


@pytest.mark.parametrize("url", [ONE, TWO])
def test_budget_spent_reports_every_attempt(url: str) -> None:
    rpc = RPCClient(url, retries=1, sleep=lambda _: None)
    seen: list[str] = []
    _scripted(rpc, [TransportError("a"), TransportError("b"), {"OK": True, "Value": 3}], seen)
    with pytest.raises(TransportError, match=r"every attempt failed \(2 attempts\)"):
        rpc.call("m", (), {}, timeout=5)
    assert len(seen) == 2


@pytest.mark.parametrize("url", [ONE, TWO])
def test_a_failure_after_the_arguments_is_never_retried(url: str) -> None:
    rpc = RPCClient(url, retries=3, sleep=lambda _: None)
    seen: list[str] = []
    _scripted(rpc, [ConnectionClosedError("gone"), {"OK": True}], seen, phase=CallPhase.ARGUMENTS_SENT)
    with pytest.raises(ConnectionClosedError, match="gone"):
        rpc.call("m", (), {}, timeout=5)
    assert len(seen) == 1


def test_the_service_description_is_held_so_its_names_stay_remote_methods() -> None:
    """DISET's RPCClient inherits BaseClient's attributes, which hide remote methods of the same names; ours holds
    the description (rpc.base), so ``rpc.setup()`` or ``rpc.timeout()`` call the remote method, as DIRAC code means."""
    rpc = RPCClient(ONE, sleep=lambda _: None)
    description = {name for name in dir(rpc.base) if not name.startswith("_")}
    assert {"setup", "timeout", "vo", "options", "retry", "service", "selector"} <= description
    assert not description & {name for name in dir(rpc) if not name.startswith("_")} - {"base", "pool"}
    seen: list[str] = []
    methods: list[str] = []

    def call_url(endpoint: Any, method: str, *args: Any, attempt: Attempt, **kwargs: Any) -> Any:
        seen.append(endpoint.url)
        methods.append(method)
        return {"OK": True, "Value": method}

    rpc._call_url = call_url  # type: ignore[method-assign]
    assert rpc.setup()["Value"] == "setup" and rpc.timeout(5)["rpcStub"][1:] == ("timeout", (5,))
    assert methods == ["setup", "timeout"]
