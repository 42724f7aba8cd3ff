"""The ``Demo/Echo`` service: a small but complete ``RequestHandler``.

What it shows a service author:

* ``types_<name>`` for every exported method (the framework refuses a class without them, at import time);
* ``kwtypes_<name>`` for the keyword arguments a method accepts;
* ``auth_<name>`` rules, overridden by the configuration's ``Authorization`` section, and a method without any
  rule (``reset``) that is therefore refused: the service denies by default;
* a long handler (``slow``) that stops early when its caller has gone;
* which instance served a call (``served_by``), so a client can watch failover between instances.

Run it with :class:`~rpcframework.server.Service` and :class:`~rpcframework.server.ServiceReactor` (see
``run_demo.py``), or with ``rpcframework serve``; call it with :class:`examples.echo.client.EchoClient`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from rpcframework.server import S_ERROR, S_OK, DReturn, RequestHandler

#: ``slow`` never sleeps longer than this, whatever a caller asks: a handler thread is a shared resource.
MAX_SLOW_SECONDS = 30.0
_POLL_SECONDS = 0.02


class EchoHandler(RequestHandler):
    """Echoes, adds and waits; reports which instance answered and who called."""

    lock: ClassVar[threading.Lock]
    calls_served: ClassVar[int] = 0

    @classmethod
    def initializeHandler(cls, serviceInfo: Mapping[str, Any]) -> DReturn:
        # Runs once per service before the first request. Two instances in one process share this class, so
        # the counter is shared state behind a lock, not per-instance state.
        cls.lock = threading.Lock()
        cls.calls_served = 0
        return S_OK()

    def initialize(self) -> None:
        # Runs on the fresh instance of every request.
        with self.lock:
            type(self).calls_served += 1
        self.user = self.getRemoteCredentials().get("username", "anonymous")

    # DIRAC's built-in echo takes a string; [None] widens it to any value the codec can carry.
    types_echo: ClassVar[list[Any]] = [None]
    auth_echo: ClassVar[list[str]] = ["authenticated"]

    def export_echo(self, data: Any) -> DReturn:
        """Return ``data`` unchanged."""
        return S_OK(data)

    types_add: ClassVar[list[Any]] = [(int, float), (int, float)]
    auth_add: ClassVar[list[str]] = ["NormalUser"]  # a property: any group that grants NormalUser

    def export_add(self, a: float, b: float) -> DReturn:
        """``a + b``."""
        return S_OK(a + b)

    types_greet: ClassVar[list[Any]] = [str]
    kwtypes_greet: ClassVar[dict[str, Any]] = {"greeting": str}
    auth_greet: ClassVar[list[str]] = ["authenticated"]

    def export_greet(self, name: str, *, greeting: str = "Hello") -> DReturn:
        """A greeting; ``greeting`` is a keyword argument (DIRAC clients cannot send those, ours can)."""
        return S_OK(f"{greeting}, {name}! (answered for {self.user})")

    types_slow: ClassVar[list[Any]] = [(int, float)]
    auth_slow: ClassVar[list[str]] = ["authenticated"]

    def export_slow(self, seconds: float) -> DReturn:
        """Wait ``seconds`` (at most :data:`MAX_SLOW_SECONDS`), stopping early when the caller disconnects."""
        if seconds < 0:
            return S_ERROR(f"seconds must be >= 0, not {seconds}")
        end = time.monotonic() + min(seconds, MAX_SLOW_SECONDS)
        while time.monotonic() < end:
            if not self.caller_connected():
                # Nobody will read the result: free the worker instead of finishing the job.
                return S_ERROR("caller left before the end")
            time.sleep(_POLL_SECONDS)
        return S_OK({"slept": seconds, "served_by": self.srv_getURL()})

    types_served_by: ClassVar[list[Any]] = []
    auth_served_by: ClassVar[list[str]] = ["authenticated"]

    def export_served_by(self) -> DReturn:
        """The URL of the instance that answered, and the caller's user name."""
        return S_OK({"url": self.srv_getURL(), "user": self.user})

    # No auth_reset here and, in the demo, no rule in the configuration either: every call is refused.
    types_reset: ClassVar[list[Any]] = []

    def export_reset(self) -> DReturn:
        """Reset the call counter (nobody may call it until an operator adds a rule for it)."""
        with self.lock:
            type(self).calls_served = 0
        return S_OK()
