"""Argument checks, through dispatch: DIRAC's texts character for character, then our extensions.

The expected strings are copied from DIRAC 9.1.22's replies (reference captures ``error-replies.txt`` and
``dip-json.txt``): clients parse these messages, so equality, not ``in``, is the assertion.
"""

# DISET's convention is a class-level list for types_/auth_; the framework copies them, never mutates them.

from __future__ import annotations

from typing import Any

import pytest

from rpcframework.server import S_OK, RequestContext, RequestHandler, dispatch


class Handler(RequestHandler):
    types_add = [int, int]

    def export_add(self, a: int, b: int) -> Any:
        return S_OK(a + b)

    types_alt = [[int, float], (list, tuple), None]

    def export_alt(self, number: float, items: list[Any], anything: Any) -> Any:
        return S_OK([number, list(items), anything])

    types_union = [int | None]

    def export_union(self, value: int | None) -> Any:
        return S_OK(value)

    types_opt = [str]
    kwtypes_opt = {"count": int, "verbose": bool}

    def export_opt(self, name: str, count: int = 1, *, verbose: bool = False) -> Any:
        return S_OK([name, count, verbose])

    types_named = [str, None]

    def export_named(self, first: str, second: Any) -> Any:
        return S_OK([first, second])

    types_kwonly = [int]
    kwtypes_kwonly = {"mode": str}

    def export_kwonly(self, a: int, *, mode: str) -> Any:
        return S_OK([a, mode])

    types_star = [int]
    kwtypes_star = {"flag": bool}

    def export_star(self, a: int, *rest: Any, **options: Any) -> Any:
        return S_OK([a, list(rest), options])

    types_posonly = [int]

    def export_posonly(self, a: int, /) -> Any:
        return S_OK(a)


def call(context: RequestContext, method: str, *args: Any, **kwargs: Any) -> Any:
    return dispatch(Handler, method, list(args), kwargs or None, context)


def error(message: str) -> dict[str, Any]:
    return {"OK": False, "Errno": 0, "Message": message}


# -- DIRAC's texts ---------------------------------------------------------------------------------------------


def test_unknown_method(context: RequestContext) -> None:
    assert dispatch(Handler, "nosuch", [], None, context) == error("Unknown method nosuch")


def test_too_few_arguments(context: RequestContext) -> None:
    assert dispatch(Handler, "echo", [], None, context) == error("Function echo expects at least 1 arguments")


def test_type_mismatch(context: RequestContext) -> None:
    assert dispatch(Handler, "echo", [5], None, context) == error(
        "Type mismatch in parameter 0 (starting with param 0) Received <class 'int'>, expected <class 'str'>"
    )


def test_arguments_as_a_dict(context: RequestContext) -> None:
    assert dispatch(Handler, "echo", {"a": 1}, None, context) == error("Error in parameter check: 0")  # type: ignore[arg-type]


@pytest.mark.parametrize("args", ["hi", 5, None, {"x": 1, "y": 2}, b"ab"])
def test_any_non_list_arguments_value_fails_the_parameter_check(context: RequestContext, args: Any) -> None:
    assert dispatch(Handler, "echo", args, None, context) == error("Error in parameter check: 0")


def test_alternatives_mismatch_prints_the_declared_list(context: RequestContext) -> None:
    assert call(context, "alt", "1", [], None) == error(
        "Type mismatch in parameter 0 (starting with param 0) Received <class 'str'>, "
        "expected [<class 'int'>, <class 'float'>]"
    )
    assert call(context, "alt", 1, {}, None) == error(
        "Type mismatch in parameter 1 (starting with param 0) Received <class 'dict'>, "
        "expected (<class 'list'>, <class 'tuple'>)"
    )


def test_dirac_counts_mismatch_after_the_argument_count(context: RequestContext) -> None:
    assert call(context, "add", "x") == error("Function add expects at least 2 arguments")


# -- accepted values ----------------------------------------------------------------------------------------------


def test_alternatives_and_none_accept(context: RequestContext) -> None:
    assert call(context, "alt", 1, [1], object) == {"OK": True, "Value": [1, [1], object]}
    assert call(context, "alt", 1.5, (1,), None)["OK"] is True


def test_bool_passes_int_as_in_dirac(context: RequestContext) -> None:
    # isinstance(True, int) is True; DIRAC accepts it and so do we (documented).
    assert call(context, "add", True, 2) == {"OK": True, "Value": 3}


def test_union_spec(context: RequestContext) -> None:
    assert call(context, "union", None) == {"OK": True, "Value": None}
    assert call(context, "union", "x") == error(
        "Type mismatch in parameter 0 (starting with param 0) Received <class 'str'>, expected int | None"
    )


def test_tuple_arguments_value_is_accepted(context: RequestContext) -> None:
    assert dispatch(Handler, "add", (1, 2), None, context) == {"OK": True, "Value": 3}


# -- too many arguments (DIRAC lets Python fail inside the call; we answer clearly) -------------------------------


def test_too_many_arguments(context: RequestContext) -> None:
    assert dispatch(Handler, "echo", ["a", "b"], None, context) == error(
        "Function echo takes at most 1 arguments, 2 given"
    )
    assert call(context, "add", 1, 2, 3) == error("Function add takes at most 2 arguments, 3 given")


def test_optional_positional_is_checked_by_kwtypes(context: RequestContext) -> None:
    assert call(context, "opt", "n", 3) == {"OK": True, "Value": ["n", 3, False]}
    assert call(context, "opt", "n", "3") == error(
        "Type mismatch in parameter 1 (starting with param 0) Received <class 'str'>, expected <class 'int'>"
    )
    assert call(context, "opt", "n", 3, True) == error("Function opt takes at most 2 arguments, 3 given")


def test_varargs_extras_are_unchecked(context: RequestContext) -> None:
    assert call(context, "star", 1, "x", None) == {"OK": True, "Value": [1, ["x", None], {}]}


# -- keyword arguments (our extension) -----------------------------------------------------------------------------


def test_keywords_typed_by_kwtypes(context: RequestContext) -> None:
    assert call(context, "opt", "n", count=2, verbose=True) == {"OK": True, "Value": ["n", 2, True]}
    assert call(context, "opt", "n", verbose="yes") == error(
        "Type mismatch in parameter 'verbose' Received <class 'str'>, expected <class 'bool'>"
    )


def test_keyword_for_a_types_position(context: RequestContext) -> None:
    assert call(context, "add", 1, b=2) == {"OK": True, "Value": 3}
    assert call(context, "add", a=1, b=2) == {"OK": True, "Value": 3}
    assert call(context, "add", 1, b="2") == error(
        "Type mismatch in parameter 'b' Received <class 'str'>, expected <class 'int'>"
    )
    assert call(context, "named", "x", second=object) == {"OK": True, "Value": ["x", object]}


def test_missing_positions_are_counted_with_keywords(context: RequestContext) -> None:
    assert call(context, "add", b=2) == error("Function add expects at least 2 arguments")


def test_untyped_or_unknown_keywords_are_refused(context: RequestContext) -> None:
    assert call(context, "add", 1, 2, c=3) == error("Function add got an unexpected keyword argument 'c'")
    assert call(context, "posonly", a=1) == error("Function posonly got an unexpected keyword argument 'a'")
    assert dispatch(Handler, "add", [1, 2], {5: 1}, context) == error(  # type: ignore[dict-item]
        "Function add got an unexpected keyword argument 5"
    )


def test_duplicate_argument(context: RequestContext) -> None:
    assert call(context, "add", 1, 2, a=1) == error("Function add got multiple values for argument 'a'")


def test_required_keyword_only(context: RequestContext) -> None:
    assert call(context, "kwonly", 1, mode="fast") == {"OK": True, "Value": [1, "fast"]}
    assert call(context, "kwonly", 1) == error("Function kwonly is missing the keyword argument 'mode'")
    assert call(context, "kwonly", 1, mode=2) == error(
        "Type mismatch in parameter 'mode' Received <class 'int'>, expected <class 'str'>"
    )


def test_var_keyword_accepts_only_typed_names(context: RequestContext) -> None:
    assert call(context, "star", 1, flag=True) == {"OK": True, "Value": [1, [], {"flag": True}]}
    assert call(context, "star", 1, other=True) == error("Function star got an unexpected keyword argument 'other'")


def test_keywords_that_are_not_a_mapping(context: RequestContext) -> None:
    assert dispatch(Handler, "add", [1, 2], [("a", 1)], context) == error(  # type: ignore[arg-type]
        "Error in parameter check: keyword arguments must be a dict"
    )


def test_empty_keywords_behave_like_none(context: RequestContext) -> None:
    assert dispatch(Handler, "add", [1, 2], {}, context) == {"OK": True, "Value": 3}
