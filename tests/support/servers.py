"""A scripted server's skeleton: a listener on a loopback address, port 0, and a bounded accept loop on a thread.

Subclasses say what to do with each accepted connection (:meth:`LoopbackServer.handle`); by default every
connection gets a daemon thread of its own. :meth:`~LoopbackServer.stop` ends the loop and closes the listener.
"""

from __future__ import annotations

import socket
import threading

_ACCEPT_WAIT = 0.05  # how long one accept() waits before the loop looks at the stop flag again
_MAX_ACCEPT_WAITS = 1_000_000  # bounds the loop (about 14 hours of idle waits): no test runs that long


class LoopbackServer:
    def __init__(self, host: str = "127.0.0.1", *, threaded: bool = True) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server((host, 0), family=family)
        self._listener.settimeout(_ACCEPT_WAIT)
        self.host = host
        self.port: int = self._listener.getsockname()[1]
        self.threaded = threaded
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    def start(self) -> None:
        """Start accepting; call it at the end of a subclass's ``__init__``, once its own state exists."""
        self._thread.start()

    def _accept_loop(self) -> None:
        for _ in range(_MAX_ACCEPT_WAITS):
            if self._stop.is_set():
                return
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # the listener was closed
            self.accepted(sock)
            if self.threaded:
                threading.Thread(target=self.handle, args=(sock,), daemon=True).start()
            else:
                self.handle(sock)

    def accepted(self, sock: socket.socket) -> None:
        """Called on the accept loop's thread for each connection, before :meth:`handle` (e.g. to count it)."""

    def handle(self, sock: socket.socket) -> None:
        raise NotImplementedError

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        self._listener.close()
