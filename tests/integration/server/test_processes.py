"""Serving from several processes (``rpcframework serve --processes N`` / ``CloneProcesses``, ``ProcessGroup``).

Every server is a real ``rpcframework serve`` subprocess on 127.0.0.1 with ``--port 0`` (signals go to it, not to
pytest); every wait is bounded, and every server is killed in a ``finally`` if it is still running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.processes import ServeProcess as Server
from support.processes import reap, spawn_serve
from support.server_kit import Creds, RawClient
from support.waiting import poll, wait_for

from rpcframework.transports.base import get_backend

SERVICE = "Test/Pid"

HANDLER = """
import os
import time
from rpcframework.server import RequestHandler, S_OK


class PidHandler(RequestHandler):
    types_pid = []
    auth_pid = ["all"]

    def export_pid(self):
        return S_OK(os.getpid())

    types_slow = [(int, float)]
    auth_slow = ["all"]

    def export_slow(self, seconds):
        open("slow-started", "w").close()
        time.sleep(seconds)  # fault injection: a call still running when SIGTERM arrives (bounded by the test)
        return S_OK(os.getpid())

    types_crash = []
    auth_crash = ["all"]

    def export_crash(self):
        os._exit(3)
"""


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "pidhandler.py").write_text(HANDLER)
    return tmp_path


@pytest.fixture
def start(creds: Creds, workdir: Path) -> Iterator[Callable[..., Server]]:
    procs: list[subprocess.Popen[str]] = []
    host = creds.ca.default_host()

    def spawn(*extra: str) -> Server:
        args = ["pidhandler.py:PidHandler", "--name", SERVICE, "--host", "127.0.0.1", "--port", "0"]
        args += ["--cert", str(host.cert_file), "--key", str(host.key_file), "--ca-dir", str(creds.ca.cert_dir)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        server = spawn_serve([*args, *extra], cwd=workdir, env=env, procs=procs)
        assert server.url.startswith("dips://127.0.0.1:"), server.url
        return server

    try:
        yield spawn
    finally:
        reap(procs)  # the children notice their parent went away and stop within a second


def call(creds: Creds, server: Server, method: str, *args: Any) -> Any:
    """One call on a new connection (no reuse offered: the server closes it afterwards)."""
    stream = get_backend("pyopenssl").connect("localhost", server.port, tls=creds.client_tls())
    client = RawClient(stream)
    try:
        return client.call(method, *args, service=SERVICE)
    finally:
        client.close()


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            if f"\nPPid:\t{pid}\n" in status:
                found.add(int(entry.name))
    return found


def wait_gone(pids: set[int], timeout: float = 10.0) -> set[int]:
    """The pids of ``pids`` still running (not zombies) after ``timeout``."""
    return poll(lambda: {pid for pid in pids if _running(pid)}, lambda alive: not alive, timeout)


def _running(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def distinct_pids(creds: Creds, server: Server, want: int, limit: int = 300) -> set[int]:
    seen: set[int] = set()
    for _ in range(limit):
        result = call(creds, server, "pid")
        assert result["OK"], result
        seen.add(result["Value"])
        if len(seen) >= want:
            break
    return seen


def test_two_processes_serve_calls(creds: Creds, start: Callable[..., Server]) -> None:
    server = start("--processes", "2")
    children = children_of(server.proc.pid)
    assert len(children) == 2
    seen = distinct_pids(creds, server, 2)
    assert seen == children  # every call was served by a child, never by the parent, and both served
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(15) == 0
    assert wait_gone(children) == set()


def test_clone_processes_from_the_configuration(creds: Creds, start: Callable[..., Server], workdir: Path) -> None:
    (workdir / "clone.cfg").write_text("Systems\n{\n  Test\n  {\n    Services\n    {\n      Pid\n      {\n"
                                       "        CloneProcesses = 2\n      }\n    }\n  }\n}\n")  # fmt: skip
    server = start("--config", "clone.cfg")
    children = children_of(server.proc.pid)
    assert len(children) == 2
    assert distinct_pids(creds, server, 2) == children
    single = start("--config", "clone.cfg", "--processes", "1")
    assert children_of(single.proc.pid) == set()
    assert call(creds, single, "pid")["Value"] == single.proc.pid


def test_sigterm_drains_an_in_flight_call(creds: Creds, start: Callable[..., Server], workdir: Path) -> None:
    server = start("--processes", "2", "--drain-timeout", "10")
    children = children_of(server.proc.pid)
    results: list[Any] = []
    caller = threading.Thread(target=lambda: results.append(call(creds, server, "slow", 1.5)), daemon=True)
    caller.start()
    wait_for((workdir / "slow-started").exists)
    server.proc.send_signal(signal.SIGTERM)
    caller.join(15)
    assert results and results[0]["OK"], results
    assert results[0]["Value"] in children
    assert server.proc.wait(15) == 0
    assert wait_gone(children) == set()


def test_a_crashed_child_is_reported_and_replaced(creds: Creds, start: Callable[..., Server]) -> None:
    server = start("--processes", "2")
    before = children_of(server.proc.pid)
    with pytest.raises(Exception):  # noqa: B017 - the connection just drops, however the transport words it
        call(creds, server, "crash")
    after = poll(lambda: children_of(server.proc.pid), lambda now: len(now) == 2 and now != before)
    assert len(after) == 2 and len(after & before) == 1, (before, after)
    assert distinct_pids(creds, server, 2) == after  # the service still answers, from both processes
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(15) == 0
    _out, err = server.proc.communicate(timeout=10)
    assert "exited unexpectedly (exit status 3)" in err
    assert wait_gone(before | after) == set()
