"""The service the multi-host test bed runs on each host: ``Bed/Where``.

``where()`` answers the name of the host that served the call (``RPCF_BED_HOST`` in the server's environment), so
a client can tell which host answered; ``sleep(seconds)`` holds a worker (a busy host). Started by
:mod:`benchmarks.netns` with ``rpcframework serve benchmarks.netns_service:WhereHandler --name Bed/Where``.
"""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar

from rpcframework.server import S_OK, DReturn, RequestHandler

#: The longest ``sleep`` a caller may ask for.
MAX_SLEEP = 30.0


class WhereHandler(RequestHandler):
    """Which host answered; a call that takes a while."""

    types_where: ClassVar[list[Any]] = []
    auth_where: ClassVar[list[str]] = ["authenticated"]

    def export_where(self) -> DReturn:
        return S_OK(os.environ.get("RPCF_BED_HOST", "?"))

    types_sleep: ClassVar[list[Any]] = [(int, float)]
    auth_sleep: ClassVar[list[str]] = ["authenticated"]

    def export_sleep(self, seconds: float) -> DReturn:
        time.sleep(min(max(float(seconds), 0.0), MAX_SLEEP))
        return S_OK(os.environ.get("RPCF_BED_HOST", "?"))
