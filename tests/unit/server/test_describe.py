"""The pure parts of ``describe``: portable type names, parameters from the compiled table, escaping, suggestions."""

from __future__ import annotations

import datetime
from typing import Any, ClassVar

from hypothesis import given
from hypothesis import strategies as st

from rpcframework.returnvalues import S_OK
from rpcframework.server import RequestHandler
from rpcframework.server.describe import (
    MAX_QUOTED_NAME,
    callable_methods,
    describe_method,
    describe_service,
    portable_type,
    quote_name,
    unknown_method_message,
)


class Local:
    """A class of the server's own: never named to a peer."""


class Catalogue(RequestHandler):
    types_find: ClassVar[list[Any]] = [str, [int, float], None]
    kwtypes_find: ClassVar[dict[str, Any]] = {"limit": int, "since": datetime.datetime | None, "flavour": Local}
    auth_find: ClassVar[list[str]] = ["authenticated"]

    def export_find(self, pattern, size, extra, limit=10, *, since=None, flavour=None):  # type: ignore[no-untyped-def]
        """Find things.

        Longer text."""
        return S_OK([pattern, size, extra, limit, since, flavour])


def test_portable_type_names() -> None:
    assert portable_type(int) == "int"
    assert portable_type((int, float)) == "int | float"
    assert portable_type(int | None) == "int | none"
    assert portable_type(None) == "any"
    assert portable_type(Local) == "any"  # no server class name goes out
    assert portable_type((int, Local)) == "any"
    assert portable_type(datetime.datetime) == "datetime"


def test_parameters_come_from_the_compiled_table_in_call_order() -> None:
    described = describe_method(Catalogue.method_table().methods["find"])
    assert described["doc"] == "Find things.\n\nLonger text."
    assert described["params"] == [
        {"name": "pattern", "type": "str", "required": True, "kind": "positional"},
        {"name": "size", "type": "int | float", "required": True, "kind": "positional"},
        {"name": "extra", "type": "any", "required": True, "kind": "positional"},
        {"name": "limit", "type": "int", "required": False, "kind": "positional"},
        {"name": "since", "type": "datetime | none", "required": False, "kind": "keyword"},
        {"name": "flavour", "type": "any", "required": False, "kind": "keyword"},
    ]
    assert described["varargs"] is False


def test_describe_lists_nothing_without_an_authorization_answer() -> None:
    table = Catalogue.method_table()
    assert describe_service("S/C", "1", table, None)["methods"] == []
    only_find = describe_service("S/C", "1", table, lambda action, name: (action, name) == ("RPC", "find"))
    assert [m["name"] for m in only_find["methods"]] == ["find"]
    assert callable_methods(table, lambda action, name: name != "find") == ["describe", "echo", "ping", "whoami"]


def test_unknown_method_message() -> None:
    def anyone(action: str, name: str) -> bool:
        return True

    assert unknown_method_message("fnd", ["find", "ping"], anyone) == "Unknown method fnd; did you mean find?"
    assert unknown_method_message("fnd", ["find"], lambda action, name: name != "find") == "Unknown method fnd"
    assert unknown_method_message("fnd", ["find"], None) == "Unknown method fnd"
    assert unknown_method_message("zzz", ["find"], anyone) == "Unknown method zzz"
    assert unknown_method_message(["a"], ["find"], anyone) == "Unknown method ['a']"
    assert unknown_method_message("a\r\nb", [], anyone) == "Unknown method a\\x0d\\x0ab"


@given(st.text(max_size=400))
def test_quoted_names_are_short_and_printable_ascii(name: str) -> None:
    quoted = quote_name(name)
    assert len(quoted) <= MAX_QUOTED_NAME
    assert quoted.isascii() and quoted.isprintable()


def test_mock_transport_describes_with_its_own_caller() -> None:
    from rpcframework.client import Client, MockTransport

    anonymous = Client("S/C", transport=MockTransport(Catalogue, caller=None))
    assert [m["name"] for m in anonymous.describe()["Value"]["methods"]] == ["describe", "ping", "whoami"]
    assert anonymous.fnd("x", 1, 2)["Message"] == "Unknown method fnd"
    user = Client("S/C", transport=MockTransport(Catalogue))
    assert "find" in [m["name"] for m in user.describe()["Value"]["methods"]]
    assert user.fnd("x", 1, 2)["Message"] == "Unknown method fnd; did you mean find?"


def test_transfer_directions_are_filtered_like_methods() -> None:
    class Files(RequestHandler):
        auth_transfer_fromClient: ClassVar[list[str]] = ["authenticated"]
        auth_transfer_toClient: ClassVar[list[str]] = ["all"]

        def transfer_fromClient(self, file_id, token, size, helper):  # type: ignore[no-untyped-def]
            return S_OK()

        def transfer_toClient(self, file_id, token, helper):  # type: ignore[no-untyped-def]
            return S_OK()

    table = Files.method_table()
    only_to = describe_service("S/C", "1", table, lambda action, name: action != "FileTransfer" or name == "ToClient")
    assert only_to["transfers"] == ["ToClient"]
    assert describe_service("S/C", "1", table, lambda action, name: True)["transfers"] == ["FromClient", "ToClient"]
