"""What every case module shares: the :class:`Case` record, the :class:`Caller` protocol, stop handling.

A server function binds 127.0.0.1 on an ephemeral port, sends its address (``"127.0.0.1:PORT"`` or a service URL,
optionally followed by ``" pid=N"``) through ``control`` and serves until the parent sends ``"stop"`` (or goes
away). A client factory returns a :class:`Caller` whose ``call()`` performs one measured operation and raises if
the answer is wrong.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Protocol

from benchmarks.measure import Plan

__all__ = [
    "PAYLOAD_SIZE",
    "Caller",
    "Case",
    "payload_path",
    "raise_nofile_limit",
    "split_address",
    "wait_for_stop",
]

#: Size of the file the transfer cases move (generated once per run, random bytes).
PAYLOAD_SIZE = 256 * 1024 * 1024
#: A server process never outlives this, even if the parent forgets to stop it.
MAX_SERVE_SECONDS = 3600.0


class Caller(Protocol):
    """One measured operation per ``call()``."""

    def call(self) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Case:
    """One benchmark case.

    ``kind``: ``"echo"`` (calls/s and latency), ``"throughput"`` (``bytes_per_call`` bytes per call, shown in MiB/s)
    or ``"idle"`` (the idle-connections case, which reports the server's memory). ``threads`` client threads
    call at once, each with its own caller. ``plan`` replaces the run's plan (given the run's plan and whether
    the run is ``--quick``); ``max_rounds`` caps the rounds; ``setup_seconds`` is added to the give-up limit for
    cases whose client needs long to get ready (opening 1,000 connections).
    """

    name: str
    description: str
    floor: str | None  # the raw case this one is compared with
    serve: Callable[[Path, Connection], None]
    client: Callable[[Path, str], Caller]
    kind: str = "echo"
    threads: int = 1
    bytes_per_call: int = 0
    plan: Callable[[Plan, bool], Plan] | None = None
    max_rounds: int | None = None
    setup_seconds: float = 0.0
    needs_payload: bool = False

    def plan_for(self, base: Plan, quick: bool) -> Plan:
        return base if self.plan is None else self.plan(base, quick)

    def rounds_for(self, rounds: int) -> int:
        return rounds if self.max_rounds is None else max(1, min(rounds, self.max_rounds))


def wait_for_stop(control: Connection, limit: float = MAX_SERVE_SECONDS) -> None:
    """Block until the parent says ``"stop"``, closes the pipe, or ``limit`` seconds pass."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            if control.poll(0.5):
                control.recv()
                return
        except (EOFError, OSError):
            return


def split_address(address: str) -> tuple[str, int]:
    """``"127.0.0.1:PORT"`` -> (host, port)."""
    host, port = address.split(" ", 1)[0].rsplit(":", 1)
    return host, int(port)


def payload_path(ca: Path) -> Path:
    """The run's random payload file (next to the run's dev CA, in the run's temporary directory)."""
    return ca.parent / "payload-256mib.bin"


def raise_nofile_limit(wanted: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards ``wanted`` (never above the hard limit); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft
