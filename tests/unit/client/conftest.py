"""Client test doubles: a hand-moved clock and a recording call target. No sockets, no sleeping."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from support.clock import FakeClock

from rpcframework.client.options import ClientOptions
from rpcframework.returnvalues import S_OK, DReturn


@dataclass(frozen=True)
class Call:
    service: str | None
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    timeout: float | None


class RecordingTarget:
    """A CallTarget that records every call and answers with ``respond(call)`` (default: echo as S_OK)."""

    def __init__(self, respond: Callable[[Call], Any] | None = None, service: str | None = None) -> None:
        self.calls: list[Call] = []
        self.closed = False
        self.service = service
        self._respond = respond or (lambda call: S_OK({"method": call.method, "args": list(call.args)}))
        self._lock = threading.Lock()

    def call(self, method: str, args: tuple[Any, ...], kwargs: Mapping[str, Any], *, timeout: float | None) -> DReturn:
        record = Call(self.service, method, args, dict(kwargs), timeout)
        with self._lock:
            self.calls.append(record)
        result: DReturn = self._respond(record)
        return result

    def close(self) -> None:
        self.closed = True


@dataclass
class RecordingTransport:
    """A Transport that opens one RecordingTarget per service and remembers the options it was given."""

    opened: dict[str, RecordingTarget] = field(default_factory=dict)
    options: list[ClientOptions] = field(default_factory=list)

    def open_target(self, service: str, options: ClientOptions) -> RecordingTarget:
        assert service not in self.opened, "a target is opened once per service"
        self.options.append(options)
        target = RecordingTarget(service=service)
        self.opened[service] = target
        return target


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def target() -> RecordingTarget:
    return RecordingTarget()


@pytest.fixture
def transport() -> RecordingTransport:
    return RecordingTransport()
