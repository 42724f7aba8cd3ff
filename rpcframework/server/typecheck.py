"""Argument checks for exported methods, compiled once per method at class creation.

A handler declares ``types_<name>`` next to ``export_<name>``, as in DISET: a list with one spec per positional
argument, where a spec is

- a type (``str``): the argument must be an instance of it (``isinstance``, so ``True`` passes ``int``, as in DIRAC);
- a list or tuple of types (``[int, float]``) or a union (``int | None``): any of them;
- ``None``: that position is not checked.

Keyword arguments are our extension (DIRAC clients never send them). A keyword may name a positional parameter that
``types_`` covers (checked with that position's spec) or a name listed in ``kwtypes_<name> = {"limit": int}``; any
other keyword is refused, so a method only accepts the keywords its author typed.

:func:`compile_argument_check` validates the declarations (raising :class:`HandlerDefinitionError` when the class is
defined) and precomputes everything, so :meth:`ArgumentCheck.check` does only the per-call work. Error texts for the
cases DIRAC has are DIRAC's, character for character, because clients parse them.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from rpcframework.errors import ConfigurationError

#: What ``isinstance`` accepts as its second argument once a spec is compiled.
IsinstanceSpec = type | types.UnionType | tuple[type | types.UnionType, ...]

_POSITIONAL_KINDS: Final = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


class HandlerDefinitionError(ConfigurationError, TypeError):
    """A handler class is declared wrongly (raised when the class statement runs, never at call time).

    It is a :class:`TypeError` too, because that is what Python raises for a class that cannot be defined, and a
    :class:`~rpcframework.errors.ConfigurationError` so ``except RPCFrameworkError`` catches it.
    """


def _compile_alternative(item: object) -> type | types.UnionType | None:
    if isinstance(item, type | types.UnionType):
        return item
    return None


def compile_spec(spec: object, where: str) -> IsinstanceSpec | None:
    """Turn one ``types_`` element into an ``isinstance`` argument (``None`` means "do not check").

    ``where`` names the declaration in the error message (``"types_echo[0]"``).
    """
    if spec is None:
        return None
    single = _compile_alternative(spec)
    if single is not None:
        return single
    if isinstance(spec, list | tuple) and spec:
        alternatives = tuple(_compile_alternative(item) for item in spec)
        if all(alt is not None for alt in alternatives):
            return tuple(alt for alt in alternatives if alt is not None)
    raise HandlerDefinitionError(
        f"{where} = {spec!r} is not a valid type spec: use a type (str), a list of alternative types ([int, float]), "
        "a union (int | None) or None to skip the check"
    )


def describe_spec(spec: object) -> str:
    """The text DIRAC prints for an expected type: ``str()`` of the declaration as the author wrote it."""
    return str(spec)


def mismatch_message(position: int | str, value: object, expected: str) -> str:
    """DIRAC's type-mismatch text (positional) or its keyword variant (ours)."""
    if isinstance(position, int):
        return (
            f"Type mismatch in parameter {position} (starting with param 0) Received {type(value)}, expected {expected}"
        )
    return f"Type mismatch in parameter '{position}' Received {type(value)}, expected {expected}"


@dataclass(frozen=True, slots=True)
class PositionCheck:
    """One checked position: its index, the compiled spec and DIRAC's text for it."""

    index: int
    spec: IsinstanceSpec
    expected: str


@dataclass(frozen=True, slots=True)
class KeywordCheck:
    """One keyword the method accepts: its spec (``None`` = unchecked) and, if it is positional too, its index."""

    spec: IsinstanceSpec | None
    expected: str
    position: int | None


@dataclass(frozen=True, slots=True)
class ArgumentCheck:
    """Everything needed to check one method's arguments, precomputed at class creation."""

    method: str
    min_args: int
    max_args: int | None
    positions: tuple[PositionCheck, ...]
    keywords: Mapping[str, KeywordCheck]
    required_keywords: tuple[str, ...]

    def check(self, args: Sequence[Any], kwargs: Mapping[str, Any] | None) -> str | None:
        """Return the error text for these arguments, or ``None`` when they are acceptable."""
        count = len(args)
        if self.max_args is not None and count > self.max_args:
            return f"Function {self.method} takes at most {self.max_args} arguments, {count} given"
        if kwargs:
            problem = self._check_keyword_structure(count, kwargs)
            if problem is not None:
                return problem
        elif count < self.min_args:
            return f"Function {self.method} expects at least {self.min_args} arguments"
        elif self.required_keywords:
            return f"Function {self.method} is missing the keyword argument '{self.required_keywords[0]}'"
        for position in self.positions:
            if position.index >= count:
                break
            value = args[position.index]
            if not isinstance(value, position.spec):
                return mismatch_message(position.index, value, position.expected)
        return self._check_keyword_types(kwargs) if kwargs else None

    def _check_keyword_structure(self, count: int, kwargs: Mapping[str, Any]) -> str | None:
        """Unknown or duplicated keywords, and positions or keyword-only parameters still missing."""
        supplied = count
        for name in kwargs:
            keyword = self.keywords.get(name) if isinstance(name, str) else None
            if keyword is None:
                return f"Function {self.method} got an unexpected keyword argument {name!r}"
            if keyword.position is not None:
                if keyword.position < count:
                    return f"Function {self.method} got multiple values for argument '{name}'"
                if keyword.position < self.min_args:
                    supplied += 1
        if supplied < self.min_args:
            return f"Function {self.method} expects at least {self.min_args} arguments"
        for required in self.required_keywords:
            if required not in kwargs:
                return f"Function {self.method} is missing the keyword argument '{required}'"
        return None

    def _check_keyword_types(self, kwargs: Mapping[str, Any]) -> str | None:
        for name, value in kwargs.items():
            keyword = self.keywords[name]
            if keyword.spec is not None and not isinstance(value, keyword.spec):
                return mismatch_message(name, value, keyword.expected)
        return None


@dataclass(frozen=True, slots=True)
class _Signature:
    positional: tuple[inspect.Parameter, ...]
    keyword_only: tuple[inspect.Parameter, ...]
    var_positional: bool
    var_keyword: bool


def _read_signature(function: Callable[..., Any], where: str) -> _Signature:
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError) as exc:
        raise HandlerDefinitionError(f"{where}: cannot read its signature ({exc})") from exc
    if not parameters or parameters[0].kind not in _POSITIONAL_KINDS:
        raise HandlerDefinitionError(f"{where} must take self as its first parameter")
    parameters = parameters[1:]
    kinds = {p.kind for p in parameters}
    return _Signature(
        positional=tuple(p for p in parameters if p.kind in _POSITIONAL_KINDS),
        keyword_only=tuple(p for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY),
        var_positional=inspect.Parameter.VAR_POSITIONAL in kinds,
        var_keyword=inspect.Parameter.VAR_KEYWORD in kinds,
    )


def _compile_types(
    method: str, types_decl: object, signature: _Signature
) -> tuple[list[PositionCheck], dict[str, KeywordCheck]]:
    if not isinstance(types_decl, list | tuple):
        raise HandlerDefinitionError(
            f"types_{method} = {types_decl!r} must be a list with one type spec per positional argument"
        )
    if not signature.var_positional and len(types_decl) > len(signature.positional):
        raise HandlerDefinitionError(
            f"types_{method} lists {len(types_decl)} arguments but export_{method} accepts at most "
            f"{len(signature.positional)}"
        )
    required = sum(1 for p in signature.positional if p.default is inspect.Parameter.empty)
    if len(types_decl) < required:
        missing = signature.positional[len(types_decl)].name
        raise HandlerDefinitionError(
            f"export_{method} requires {required} positional arguments but types_{method} covers {len(types_decl)}: "
            f"add a spec for '{missing}' (None to leave it unchecked) so no required argument goes unchecked"
        )
    positions: list[PositionCheck] = []
    keywords: dict[str, KeywordCheck] = {}
    for index, raw in enumerate(types_decl):
        spec = compile_spec(raw, f"types_{method}[{index}]")
        expected = describe_spec(raw)
        if spec is not None:
            positions.append(PositionCheck(index, spec, expected))
        if index < len(signature.positional):
            parameter = signature.positional[index]
            if parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD:
                keywords[parameter.name] = KeywordCheck(spec, expected, index)
    return positions, keywords


def _compile_kwtypes(
    method: str, kwtypes_decl: object, signature: _Signature, first_unchecked: int
) -> tuple[list[PositionCheck], dict[str, KeywordCheck]]:
    if not isinstance(kwtypes_decl, Mapping):
        raise HandlerDefinitionError(f"kwtypes_{method} = {kwtypes_decl!r} must be a dict of parameter name -> spec")
    by_name = {p.name: (index, p) for index, p in enumerate(signature.positional)}
    keyword_only = {p.name for p in signature.keyword_only}
    positions: list[PositionCheck] = []
    keywords: dict[str, KeywordCheck] = {}
    for name, raw in kwtypes_decl.items():
        where = f"kwtypes_{method}[{name!r}]"
        if not isinstance(name, str):
            raise HandlerDefinitionError(f"{where}: parameter names must be strings")
        spec = compile_spec(raw, where)
        expected = describe_spec(raw)
        index_param = by_name.get(name)
        if index_param is not None:
            index, parameter = index_param
            if index < first_unchecked or parameter.kind is inspect.Parameter.POSITIONAL_ONLY:
                raise HandlerDefinitionError(
                    f"{where}: '{name}' is already typed by types_{method} or is positional-only; "
                    "kwtypes_ types only the parameters types_ does not cover"
                )
            if spec is not None:
                positions.append(PositionCheck(index, spec, expected))
            keywords[name] = KeywordCheck(spec, expected, index)
        elif name in keyword_only or signature.var_keyword:
            keywords[name] = KeywordCheck(spec, expected, None)
        else:
            raise HandlerDefinitionError(f"{where}: export_{method} has no parameter '{name}'")
    return positions, keywords


def compile_argument_check(
    method: str, function: Callable[..., Any], types_decl: object, kwtypes_decl: object = None
) -> ArgumentCheck:
    """Validate ``types_<method>`` (and ``kwtypes_<method>``) against ``export_<method>``'s signature and compile them.

    Raises :class:`HandlerDefinitionError` when a spec is malformed, when ``types_`` lists more arguments than the
    function accepts, when a required positional parameter has no ``types_`` entry, or when a required keyword-only
    parameter is not typed in ``kwtypes_`` (it could never be passed).
    """
    signature = _read_signature(function, f"export_{method}")
    positions, keywords = _compile_types(method, types_decl, signature)
    declared = len(types_decl) if isinstance(types_decl, list | tuple) else 0
    if kwtypes_decl is not None:
        extra_positions, extra_keywords = _compile_kwtypes(method, kwtypes_decl, signature, declared)
        positions.extend(extra_positions)
        keywords.update(extra_keywords)
    required_keywords = tuple(p.name for p in signature.keyword_only if p.default is inspect.Parameter.empty)
    untyped = [name for name in required_keywords if name not in keywords]
    if untyped:
        raise HandlerDefinitionError(
            f"export_{method} has the required keyword-only parameter '{untyped[0]}': "
            f"type it in kwtypes_{method} = {{'{untyped[0]}': ...}} or give it a default"
        )
    positions.sort(key=lambda p: p.index)
    return ArgumentCheck(
        method=method,
        min_args=declared,
        max_args=None if signature.var_positional else len(signature.positional),
        positions=tuple(positions),
        keywords=types.MappingProxyType(keywords),
        required_keywords=required_keywords,
    )
