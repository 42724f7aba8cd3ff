"""The W3C trace context a proposal may carry: a malformed one is ignored (None), as W3C asks of a receiver."""

from __future__ import annotations

import pytest

from rpcframework.protocol.messages import TraceContext

pytestmark = pytest.mark.timeout(30)

GOOD = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_valid_context_is_kept_with_its_state() -> None:
    assert TraceContext.from_wire({"traceparent": GOOD}) == TraceContext(GOOD)
    assert TraceContext.from_wire({"traceparent": GOOD, "tracestate": "a=1"}) == TraceContext(GOOD, "a=1")


@pytest.mark.parametrize(
    "parent",
    [
        GOOD.upper(),
        "ff" + GOOD[2:],  # the forbidden version
        GOOD[:3] + "0" * 32 + GOOD[35:],  # all-zero trace id
        GOOD[:36] + "0" * 16 + GOOD[52:],  # all-zero span id
        GOOD + "\n",
        GOOD[:-1],
        GOOD.replace("-", "_"),
        GOOD[:-1] + "g",
        "\u0660\u0660" + GOOD[2:],  # Unicode digits (ARABIC-INDIC ZERO) are not hex digits
        "",
        1,
        None,
    ],
)
def test_a_malformed_traceparent_is_ignored(parent: object) -> None:
    assert TraceContext.from_wire({"traceparent": parent}) is None


@pytest.mark.parametrize("state", ["x" * 513, "a=1\n", 5])
def test_a_bad_tracestate_is_dropped_not_the_context(state: object) -> None:
    assert TraceContext.from_wire({"traceparent": GOOD, "tracestate": state}) == TraceContext(GOOD)


@pytest.mark.parametrize("value", [None, "x", [GOOD], {"parent": GOOD}])
def test_a_context_that_is_not_a_mapping_is_ignored(value: object) -> None:
    assert TraceContext.from_wire(value) is None
