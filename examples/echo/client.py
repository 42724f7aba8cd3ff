"""``EchoClient``: how a service author ships the client side of ``Demo/Echo``.

Users build it once and share it (it is thread-safe and reuses connections)::

    client = EchoClient()                      # URLs from the configuration: /Systems/Demo/URLs/Echo
    result = client.add(2, 3)                  # {"OK": True, "Value": 5, "rpcStub": ...}
    client.greet("Ada", greeting="Bonjour")    # a keyword argument reaches the server
    client.ping(timeout=5)                     # built-ins and undeclared methods work too, by attribute

Every call returns DIRAC's ``S_OK``/``S_ERROR`` envelope; failures of the call itself (no server reachable, a
refused credential, an expired deadline) come back as ``S_ERROR`` too.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rpcframework import DReturn
from rpcframework.client import Client


class EchoClient(Client):
    """Client of the ``Demo/Echo`` service (``examples/echo/service.py``)."""

    serverURL = "Demo/Echo"
    # Every wrapper takes DIRAC's per-call settings: ``timeout`` (seconds, a deadline for the whole call) and
    # ``url`` (one instance, or another service, instead of ``serverURL``).
    remoteMethods: ClassVar[tuple[str, ...]] = ("echo", "add", "greet", "slow", "served_by", "reset")

    def echo(self, data: Any, *, timeout: float | None = None, url: str | None = None) -> DReturn:
        """Send ``data`` and get it back."""
        return self.executeRPC("echo", data, timeout=timeout, url=url)

    def add(self, a: float, b: float, *, timeout: float | None = None, url: str | None = None) -> DReturn:
        """``a + b``, computed by the service (needs the ``NormalUser`` property)."""
        return self.executeRPC("add", a, b, timeout=timeout, url=url)

    def greet(
        self, name: str, *, greeting: str = "Hello", timeout: float | None = None, url: str | None = None
    ) -> DReturn:
        """A greeting for ``name``; ``greeting`` travels as a remote keyword argument."""
        return self.executeRPC("greet", name, greeting=greeting, timeout=timeout, url=url)

    def slow(self, seconds: float, *, timeout: float | None = None, url: str | None = None) -> DReturn:
        """Let the service wait ``seconds``: pass ``timeout=`` to see the call's deadline at work."""
        return self.executeRPC("slow", seconds, timeout=timeout, url=url)

    def served_by(self, *, timeout: float | None = None, url: str | None = None) -> DReturn:
        """Which instance answered (its URL) and the user name the service saw."""
        return self.executeRPC("served_by", timeout=timeout, url=url)
