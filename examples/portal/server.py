"""Serve the portal with uvicorn on 127.0.0.1 from a background thread, and stop it again.

``run_portal.py --once`` and the tests use it; ``run_portal.py`` without ``--once`` runs uvicorn in the main thread
instead, so Ctrl-C stops it the usual way.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Self

import uvicorn
from starlette.types import ASGIApp

__all__ = ["PortalServer"]


class PortalServer:
    """uvicorn serving ``app`` on ``127.0.0.1:port`` (``0``: a free port) in a thread; use it as a context manager."""

    def __init__(self, app: ASGIApp, *, port: int = 0, start_timeout: float = 10.0) -> None:
        self.app = app
        self.port = port
        self.start_timeout = start_timeout
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None
        self.sock: socket.socket | None = None

    @property
    def url(self) -> str:
        if self.sock is None:
            raise RuntimeError("the portal server is not running")
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def start(self) -> str:
        """Bind, start serving, wait until uvicorn accepts requests; returns the base URL."""
        # Binding here (not in uvicorn) gives the real port at once, also for port 0.
        self.sock = socket.create_server(("127.0.0.1", self.port))
        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=2
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name="portal-uvicorn", daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"uvicorn did not start within {self.start_timeout} s")
            time.sleep(0.02)
        return self.url

    def stop(self, timeout: float = 10.0) -> None:
        """Ask uvicorn to exit, wait for its thread, close the socket."""
        if self.server is not None:
            self.server.should_exit = True
        stuck = False
        if self.thread is not None:
            self.thread.join(timeout)
            stuck = self.thread.is_alive()
        if self.sock is not None:
            self.sock.close()
        self.server = self.thread = self.sock = None
        if stuck:
            raise RuntimeError(f"uvicorn did not stop within {timeout} s")

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
