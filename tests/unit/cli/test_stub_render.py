"""``rpcframework stub`` treats a ``describe`` answer as hostile: only checked names and escaped strings reach the
generated source, which always parses; anything unusable is left out and counted."""

from __future__ import annotations

import ast
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rpcframework.cli.describe import default_class_name, format_description
from rpcframework.cli.stub import parse_description, render_stub, safe_text
from rpcframework.client.generated import UNSET, call_remote
from rpcframework.errors import ConfigurationError, ProtocolError


def _method(name: Any, params: Any = (), doc: Any = "", varargs: Any = False) -> dict[str, Any]:
    return {"name": name, "params": list(params), "doc": doc, "varargs": varargs}


def _param(name: str, type_: str = "int", required: bool = True, kind: str = "positional") -> dict[str, Any]:
    return {"name": name, "type": type_, "required": required, "kind": kind}


def test_hostile_names_docs_and_types_never_become_code() -> None:
    hostile = {
        "service": 'S/C"""\nimport os',
        "version": "\x1b[2J",
        "methods": [
            _method("ok", [_param("a", "int | none"), _param("b", "os.system('x')", False)], doc='"""\nimport os\n\\'),
            _method("x(self): pass\ndef y"),
            _method("close"),  # a Client attribute: not shadowed
            _method("_private"),
            _method("class"),
            _method("dup", [_param("a"), _param("a")]),
            _method("order", [_param("a", required=False), _param("b")]),
            _method("me", [_param("self")]),
            "not a dict",
        ],
    }
    description = parse_description(hostile)
    assert [m.name for m in description.methods] == ["ok"] and description.skipped == 8
    source = render_stub(description, "SClient", 'dips://h:1/S/C"\nimport os')
    tree = ast.parse(source)
    imports = [node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)]
    assert sorted(alias.name for node in imports for alias in node.names) == [
        "Any", "Client", "DReturn", "UNSET", "Unset", "annotations", "call_remote", "datetime",
    ]  # fmt: skip
    assert "def ok(self, a: int | None, b: Any | Unset = UNSET) -> DReturn:" in source
    klass = next(node for node in tree.body if isinstance(node, ast.ClassDef))
    assert [node.name for node in klass.body if isinstance(node, ast.FunctionDef)] == ["ok"]
    assert "\x1b" not in format_description(description)


def test_not_a_description_is_a_protocol_error() -> None:
    for value in (None, [], {"methods": "x"}):
        with pytest.raises(ProtocolError):
            parse_description(value)
    with pytest.raises(ValueError, match="identifier"):
        render_stub(parse_description({"methods": []}), "not valid", "S/C")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(JSON_VALUES)
def test_any_answer_gives_parseable_source(value: Any) -> None:
    wrapped = {"service": "S/C", "methods": value if isinstance(value, list) else [value]}
    render_stub(parse_description(wrapped), "C", "S/C")  # ast.parse inside


@given(st.text(max_size=500))
def test_safe_text_has_no_control_characters(text: str) -> None:
    shown = safe_text(text, 300)
    assert not any((ord(c) < 32 and c not in "\t\n") or 0x7F <= ord(c) <= 0x9F for c in shown)
    assert not any(c in shown for c in "\u202e\u2066\u200f")  # bidi overrides (Trojan Source)


def test_default_class_name() -> None:
    assert default_class_name("dips://h:9135/DataManagement/Dispatcher") == "DispatcherClient"
    assert default_class_name("S/9x-y") == "Service9xyClient"


def test_call_remote_drops_unset_values_and_refuses_gaps() -> None:
    calls: list[tuple[Any, Any]] = []

    class Method:
        def call(self, args: Any, kwargs: Any) -> Any:
            calls.append((args, kwargs))
            return {"OK": True, "Value": None}

    class Fake:
        def remote(self, name: str) -> Method:
            return Method()

    call_remote(Fake(), "m", [1, UNSET], {"k": UNSET, "j": None})  # type: ignore[arg-type]
    assert calls == [([1], {"j": None})]
    with pytest.raises(ConfigurationError, match="argument 2 is given but argument 1"):
        call_remote(Fake(), "m", [1, UNSET, 3], {})  # type: ignore[arg-type]
