"""Fixtures for the adversarial suite: one dev CA per session with every credential an attacker might hold, and
reactors started per test (each with its own guard state) and stopped afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support.hostile_server import HostileServer, Script
from support.security_kit import Kit, make_kit

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


@pytest.fixture
def hostile(kit: Kit) -> Iterator[Callable[..., HostileServer]]:
    """``hostile(script, backend="pyopenssl")``: a :class:`HostileServer` with the kit's host certificate, stopped
    after the test."""
    started: list[HostileServer] = []

    def start(script: Script, backend: str = "pyopenssl") -> HostileServer:
        server = HostileServer(kit.server_tls(), script, backend=backend).__enter__()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
