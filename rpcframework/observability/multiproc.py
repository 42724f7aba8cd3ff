"""Multiprocess metrics set-up that must run before prometheus-client is imported (so it imports nothing of it).

prometheus-client chooses where metric values live when it is first imported: in memory, or, when
``PROMETHEUS_MULTIPROC_DIR`` is set, in memory-mapped files per process that an endpoint sums.
"""

from __future__ import annotations

import os
from typing import Final

__all__ = ["MULTIPROC_ENV", "prepare_multiprocess"]

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess(directory: str) -> None:
    """Switch this process (and the children it forks) to multiprocess metrics in ``directory`` (emptied).

    Must run before prometheus-client creates any metric value in this process: prometheus-client picks its value
    store when it is first imported, so call this before importing this module's metrics in the parent.
    """
    os.makedirs(directory, mode=0o700, exist_ok=True)
    for name in os.listdir(directory):
        if name.endswith(".db"):
            os.unlink(os.path.join(directory, name))
    os.environ[MULTIPROC_ENV] = directory
