"""What typed clients written by ``rpcframework stub`` call at run time.

A generated method has one parameter per remote parameter; optional ones default to :data:`UNSET`, so "not given"
stays distinct from ``None`` (which the remote method may accept as a value) and the server applies its own
default. :func:`call_remote` drops the unset ones and performs the call through :meth:`Client.remote`, so a remote
method named like a client attribute (``close``) still reaches the service.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from rpcframework.errors import ConfigurationError
from rpcframework.returnvalues import DReturn

if TYPE_CHECKING:
    from rpcframework.client.client import Client

__all__ = ["UNSET", "Unset", "call_remote"]


class Unset(enum.Enum):
    """The type of :data:`UNSET` (an enum member, so ``x: int | Unset = UNSET`` type-checks and narrows)."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


#: The default of an optional parameter of a generated method: "leave it to the server".
UNSET: Final = Unset.UNSET


def call_remote(client: Client, method: str, positional: Sequence[Any], keywords: Mapping[str, Any]) -> DReturn:
    """Call ``method`` with the given positional values up to the first unset one and the set keywords.

    A value given after an unset optional positional one is an error (the server would read it in the wrong place).
    """
    args: list[Any] = []
    for index, value in enumerate(positional):
        if value is UNSET:
            later = [i for i in range(index + 1, len(positional)) if positional[i] is not UNSET]
            if later:
                raise ConfigurationError(
                    f"{method}: positional argument {later[0]} is given but argument {index} before it is not"
                )
            break
        args.append(value)
    kwargs = {name: value for name, value in keywords.items() if value is not UNSET}
    return client.remote(method).call(args, kwargs)
