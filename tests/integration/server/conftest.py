"""Fixtures for the reactor tests: the plugin's session dev CA and reactors stopped after each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support.server_kit import Creds

from rpcframework.security.devca import DevCA
from rpcframework.server.reactor import ServiceReactor
from rpcframework.server.service import Service


@pytest.fixture(scope="session")
def creds(rpcframework_dev_ca: DevCA) -> Creds:
    return Creds.of(rpcframework_dev_ca)


@pytest.fixture
def serve(creds: Creds) -> Iterator[Callable[..., ServiceReactor]]:
    """Start a reactor for a test (stopped afterwards): ``serve(services, **reactor_options)``."""
    started: list[ServiceReactor] = []

    def start(services: list[Service], **options: Any) -> ServiceReactor:
        options.setdefault("host", "127.0.0.1")
        options.setdefault("tls", creds.server_tls())
        reactor = ServiceReactor(services, **options)
        reactor.start()
        started.append(reactor)
        return reactor

    yield start
    for reactor in started:
        reactor.stop(timeout=5)
