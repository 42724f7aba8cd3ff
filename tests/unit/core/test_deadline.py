"""The one Deadline type (rpcframework/deadline.py): every layer that waits uses it, and it behaves as a value."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
from support.clock import FakeClock

import rpcframework
from rpcframework.client import policy
from rpcframework.deadline import Deadline
from rpcframework.errors import ConfigurationError, DeadlineExceeded

pytestmark = pytest.mark.timeout(30)

PACKAGE = Path(rpcframework.__file__).parent


def test_no_other_deadline_class_in_the_package() -> None:
    """transports/base.py, client/policy.py and client/inner.py each had their own; now one module defines it."""
    defined = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef) and "deadline" in node.name.lower() and "Exceeded" not in node.name:
                defined.append(f"{path.relative_to(PACKAGE)}:{node.name}")
    assert defined == ["deadline.py:Deadline"]
    assert policy.Deadline is Deadline  # the client's values re-export it


def test_within_accepts_a_socket_timeout_of_zero_and_none() -> None:
    clock = FakeClock(100.0)
    assert Deadline.within(0.0, clock).expired
    assert Deadline.within(None, clock).time_left("x") is None
    with pytest.raises(ConfigurationError):
        Deadline.after(0.0, clock)  # a user's deadline must be positive
    with pytest.raises(ConfigurationError):
        Deadline.after(math.nan, clock)


def test_time_left_raises_naming_the_step_and_the_span() -> None:
    clock = FakeClock(100.0)
    deadline = Deadline.after(2.5, clock)
    assert deadline.time_left("receiving") == 2.5
    clock.now += 1.0
    assert deadline.left() == 1.5
    clock.now += 1.5
    assert deadline.left() == 0.0
    with pytest.raises(DeadlineExceeded, match=r"^receiving: the 2\.5 s deadline passed$"):
        deadline.time_left("receiving")
    with pytest.raises(DeadlineExceeded, match=r"the deadline passed"):
        Deadline(clock.now - 1, clock).time_left("sending")


def test_min_keeps_the_span_of_the_earlier_deadline_and_values_are_immutable() -> None:
    clock = FakeClock(100.0)
    call, step = Deadline.after(60.0, clock), Deadline.within(5.0, clock)
    earlier = call.min(step)
    assert earlier.expires_at == step.expires_at and earlier.seconds == 5.0
    assert earlier.clock is clock
    with pytest.raises(AttributeError):
        call.expires_at = 0.0  # type: ignore[misc]
