"""Property: whatever a peer sends and whatever a handler declares, dispatch answers with an envelope."""

from __future__ import annotations

import string
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from rpcframework.returnvalues import isReturnStructure
from rpcframework.server import S_OK, RequestContext, RequestHandler, dispatch

TYPES: list[type] = [int, float, str, bool, bytes, list, tuple, dict, type(None)]

specs = st.one_of(
    st.none(),
    st.sampled_from(TYPES),
    st.lists(st.sampled_from(TYPES), min_size=1, max_size=3),
    st.tuples(st.sampled_from(TYPES), st.sampled_from(TYPES)),
)

wire_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8), st.binary(max_size=8)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.text(max_size=4), inner, max_size=3),
        st.tuples(inner, inner),
    ),
    max_leaves=10,
)

names = st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=3)


def build_handler(types_spec: list[Any], optional: int, behaviour: str) -> type[RequestHandler]:
    parameters = [f"p{i}" for i in range(len(types_spec))] + [f"o{i}=None" for i in range(optional)]
    source = f"def export_m(self, {', '.join(parameters)}):\n    return behave(locals())\n"

    def behave(arguments: dict[str, Any]) -> Any:
        if behaviour == "raise":
            raise ValueError(arguments)
        if behaviour == "garbage":
            return arguments
        return S_OK(len(arguments))

    namespace: dict[str, Any] = {"behave": behave}
    exec(source, namespace)
    return type("Generated", (RequestHandler,), {"types_m": types_spec, "export_m": namespace["export_m"]})


@given(
    types_spec=st.lists(specs, max_size=4),
    optional=st.integers(min_value=0, max_value=2),
    behaviour=st.sampled_from(["ok", "raise", "garbage"]),
    method=st.one_of(st.just("m"), names, st.integers()),
    args=st.one_of(st.lists(wire_values, max_size=6), wire_values),
    kwargs=st.one_of(
        st.none(),
        st.dictionaries(st.one_of(names, st.sampled_from(["p0", "p1", "o0"])), wire_values, max_size=3),
        wire_values,
    ),
)
def test_dispatch_always_returns_an_envelope(
    types_spec: list[Any], optional: int, behaviour: str, method: Any, args: Any, kwargs: Any
) -> None:
    handler = build_handler(types_spec, optional, behaviour)
    result = dispatch(handler, method, args, kwargs, RequestContext())
    assert isReturnStructure(result)
    assert set(result) <= {"OK", "Value", "Message", "Errno"}
    if not result["OK"]:
        assert isinstance(result["Errno"], int)
        assert "Traceback" not in result["Message"] and "ValueError" not in result["Message"]
