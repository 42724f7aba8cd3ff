"""Method tables are compiled when the class statement runs; every declaration mistake surfaces there."""

# DISET's convention is a class-level list for types_/auth_; the framework copies them, never mutates them.

from __future__ import annotations

from typing import Any

import pytest

from rpcframework.errors import ConfigurationError
from rpcframework.server import S_OK, HandlerDefinitionError, RequestHandler


def test_export_without_types_fails_at_class_definition() -> None:
    with pytest.raises(TypeError, match=r"add types_add = \[\.\.\.\]"):

        class Handler(RequestHandler):
            def export_add(self, a: int, b: int) -> Any:
                return S_OK(a + b)


def test_definition_error_is_both_type_error_and_configuration_error() -> None:
    assert issubclass(HandlerDefinitionError, TypeError)
    assert issubclass(HandlerDefinitionError, ConfigurationError)


@pytest.mark.parametrize(
    "spec",
    [
        ["str"],
        [5],
        [list[int]],
        [[int, "x"]],
        [[]],
        [[int, None]],
        "str",
        {"a": int},
        str,
    ],
)
def test_bad_types_spec_is_refused(spec: object) -> None:
    with pytest.raises(HandlerDefinitionError, match="types_one"):
        type("Handler", (RequestHandler,), {"types_one": spec, "export_one": lambda self, x=None: S_OK(x)})


def test_types_longer_than_signature_is_refused() -> None:
    with pytest.raises(HandlerDefinitionError, match="lists 2 arguments but export_one accepts at most 1"):

        class Handler(RequestHandler):
            types_one = [int, int]

            def export_one(self, a: int) -> Any:
                return S_OK(a)


def test_required_parameter_without_spec_is_refused() -> None:
    with pytest.raises(HandlerDefinitionError, match="add a spec for 'b'"):

        class Handler(RequestHandler):
            types_two = [int]

            def export_two(self, a: int, b: int) -> Any:
                return S_OK(a + b)


def test_optional_parameters_may_go_without_spec() -> None:
    class Handler(RequestHandler):
        types_two = [int]

        def export_two(self, a: int, b: int = 0) -> Any:
            return S_OK(a + b)

    arguments = Handler.method_table().methods["two"].arguments
    assert (arguments.min_args, arguments.max_args) == (1, 2)


def test_varargs_lift_the_maximum() -> None:
    class Handler(RequestHandler):
        types_many = [int, int, int]

        def export_many(self, *values: int) -> Any:
            return S_OK(sum(values))

    assert Handler.method_table().methods["many"].arguments.max_args is None


def test_export_must_be_a_plain_method() -> None:
    with pytest.raises(HandlerDefinitionError, match="must be a plain method"):

        class Handler(RequestHandler):
            types_s: list[Any] = []

            @staticmethod
            def export_s() -> Any:
                return S_OK()


def test_export_must_take_self() -> None:
    with pytest.raises(HandlerDefinitionError, match="self"):
        type("Handler", (RequestHandler,), {"types_s": [], "export_s": lambda: S_OK(None)})


def test_initialize_handler_must_be_a_classmethod() -> None:
    with pytest.raises(HandlerDefinitionError, match="@classmethod"):

        class Handler(RequestHandler):
            def initializeHandler(self, serviceInfo: Any) -> Any:  # type: ignore[override]
                return S_OK()


def test_bad_auth_rule_is_refused() -> None:
    with pytest.raises(HandlerDefinitionError, match="auth_x"):

        class Handler(RequestHandler):
            types_x: list[Any] = []
            auth_x = [1]

            def export_x(self) -> Any:
                return S_OK()


def test_auth_rules_are_recorded_as_immutable_copies() -> None:
    rule = ["group:admins", "ServiceAdministrator"]

    class Handler(RequestHandler):
        types_x: list[Any] = []
        auth_x = rule
        types_y: list[Any] = []
        auth_y = "authenticated"
        types_z: list[Any] = []

        def export_x(self) -> Any:
            return S_OK()

        def export_y(self) -> Any:
            return S_OK()

        def export_z(self) -> Any:
            return S_OK()

    table = Handler.method_table()
    assert table.auth_rule("RPC", "x") == ("group:admins", "ServiceAdministrator")
    assert table.auth_rule("RPC", "y") == ("authenticated",)
    assert table.auth_rule("RPC", "z") is None
    assert table.auth_rule("RPC", "nosuch") is None
    assert table.auth_rule("Message", "x") is None
    assert rule == ["group:admins", "ServiceAdministrator"]
    assert Handler.auth_x is rule


def test_builtins_are_in_the_base_table() -> None:
    table = RequestHandler.method_table()
    assert set(table.methods) == {"ping", "whoami", "echo", "describe"}
    assert table.auth_rule("RPC", "ping") == ("all",)
    assert table.auth_rule("RPC", "whoami") == ("all",)
    # echo has no built-in rule: the service configuration decides, and without one it is refused.
    assert table.auth_rule("RPC", "echo") is None


def test_exports_are_inherited_and_overridable_across_the_mro() -> None:
    class Base(RequestHandler):
        types_a = [int]
        auth_a = ["authenticated"]

        def export_a(self, x: int) -> Any:
            return S_OK(("base", x))

    class Child(Base):
        types_a = [str]

        def export_b(self) -> Any:
            return S_OK()

        types_b: list[Any] = []

    class Grandchild(Child):
        def export_a(self, x: str) -> Any:
            return S_OK(("grandchild", x))

    base, child, grandchild = (k.method_table().methods for k in (Base, Child, Grandchild))
    assert set(base) == {"ping", "whoami", "echo", "describe", "a"}
    assert set(grandchild) == {"ping", "whoami", "echo", "describe", "a", "b"}
    assert base["a"].arguments.positions[0].spec is int
    assert child["a"].arguments.positions[0].spec is str
    assert child["a"].defined_in.endswith("Base")
    assert grandchild["a"].defined_in.endswith("Grandchild")
    assert grandchild["a"].auth == ("authenticated",)
    assert grandchild["a"].function is Grandchild.__dict__["export_a"]


def test_export_none_removes_an_inherited_method() -> None:
    class Handler(RequestHandler):
        export_echo = None

    assert "echo" not in Handler.method_table().methods
    assert "echo" in RequestHandler.method_table().methods


def test_echo_can_be_widened_by_a_subclass() -> None:
    class Handler(RequestHandler):
        types_echo = [None]

    assert Handler.method_table().methods["echo"].arguments.positions == ()


def test_transfer_hooks_are_recorded_with_their_rules() -> None:
    class Handler(RequestHandler):
        auth_transfer_fromClient = ["authenticated"]

        def transfer_fromClient(self, file_id: Any, token: Any, size: int, helper: Any) -> Any:
            return S_OK()

        def transfer_listBulk(self, bulk_id: Any, token: Any, compression: str) -> Any:
            return S_OK([])

    table = Handler.method_table()
    assert set(table.transfers) == {"FromClient", "ListBulk"}
    assert table.transfers["FromClient"].limit_key == "FileTransfer/FromClient"
    assert table.auth_rule("FileTransfer", "FromClient") == ("authenticated",)
    assert table.auth_rule("FileTransfer", "ListBulk") is None
    assert table.auth_rule("FileTransfer", "ToClient") is None
    assert "transfer_fromClient" not in table.methods


def test_unknown_transfer_hook_is_refused() -> None:
    with pytest.raises(HandlerDefinitionError, match="not a transfer hook"):

        class Handler(RequestHandler):
            def transfer_sideways(self) -> Any:
                return S_OK()


def test_kwtypes_must_name_parameters_not_covered_by_types() -> None:
    with pytest.raises(HandlerDefinitionError, match="no parameter 'nope'"):

        class A(RequestHandler):
            types_f = [int]
            kwtypes_f = {"nope": int}

            def export_f(self, a: int) -> Any:
                return S_OK()

    with pytest.raises(HandlerDefinitionError, match="already typed by types_f"):

        class B(RequestHandler):
            types_f = [int]
            kwtypes_f = {"a": int}

            def export_f(self, a: int) -> Any:
                return S_OK()

    with pytest.raises(HandlerDefinitionError, match="must be a dict"):

        class C(RequestHandler):
            types_f = [int]
            kwtypes_f = [int]

            def export_f(self, a: int) -> Any:
                return S_OK()


def test_required_keyword_only_parameter_needs_kwtypes() -> None:
    with pytest.raises(HandlerDefinitionError, match="required keyword-only parameter 'limit'"):

        class Handler(RequestHandler):
            types_f: list[Any] = []

            def export_f(self, *, limit: int) -> Any:
                return S_OK(limit)


def test_table_is_built_once_and_read_only() -> None:
    class Handler(RequestHandler):
        pass

    table = Handler.method_table()
    assert Handler.method_table() is table
    with pytest.raises(TypeError):
        table.methods["x"] = table.methods["echo"]  # type: ignore[index]
