"""Fixtures for the adversarial suite: one dev CA per session with every credential an attacker might hold, and
reactors started per test (each with its own guard state) and stopped afterwards."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the tests import _security_kit (the suite uses importlib mode)

from _security_kit import Kit, make_kit

from rpcframework.server import ServiceReactor


@pytest.fixture(scope="session")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Kit:
    return make_kit(tmp_path_factory.mktemp("security"))


@pytest.fixture
def serve(kit: Kit) -> Iterator[Callable[..., ServiceReactor]]:
    """``serve(config_overrides=None, *, store=None, **reactor_options)``: a TLS reactor on 127.0.0.1."""
    started: list[ServiceReactor] = []

    def start(overrides: dict[str, Any] | None = None, **options: Any) -> ServiceReactor:
        reactor = kit.reactor(overrides, **options)
        started.append(reactor.start())
        return reactor

    yield start
    for reactor in started:
        reactor.stop(timeout=5)
