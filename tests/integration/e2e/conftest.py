"""End to end: the real ``Client``/``RPCClient`` against the real ``ServiceReactor`` over real TLS on 127.0.0.1.

The plugin's session dev CA (``rpcframework_dev_ca``). Each test starts the reactors it needs through the
``cluster`` fixture (stopped afterwards); the service is the example ``Demo/Echo`` handler with an execution
counter, so tests can assert what ran on the server (at most once, which instance, which connection).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support.e2e_kit import SERVICE, CountingHandler, Creds

from rpcframework.security.devca import DevCA
from rpcframework.server import Service, ServiceReactor


@pytest.fixture(scope="session")
def creds(rpcframework_dev_ca: DevCA) -> Creds:
    return Creds.of(rpcframework_dev_ca)


Start = Callable[..., list[ServiceReactor]]


@pytest.fixture
def cluster(creds: Creds) -> Iterator[Start]:
    """``cluster(count=1, *, protocol="dips", backend="pyopenssl", name=SERVICE, **service_or_reactor_options)``.

    Starts ``count`` reactors on 127.0.0.1, each serving one instance of ``name`` with :class:`CountingHandler`
    on its own ephemeral port. ``max_threads`` goes to the ``Service``; other options to the reactor.
    """
    CountingHandler.reset_observations()
    started: list[ServiceReactor] = []

    def start(
        count: int = 1,
        *,
        protocol: str = "dips",
        backend: str = "pyopenssl",
        name: str = SERVICE,
        max_threads: int | None = None,
        **reactor_options: Any,
    ) -> list[ServiceReactor]:
        reactors = []
        for _ in range(count):
            service = Service(
                name, CountingHandler, config=creds.config(), port=0, protocol=protocol, max_threads=max_threads
            )
            reactor = ServiceReactor(
                [service], host="127.0.0.1", backend=backend, tls=creds.server_tls(), **reactor_options
            )
            started.append(reactor.start())
            reactors.append(reactor)
        return reactors

    yield start
    for reactor in started:
        reactor.stop(timeout=5)
