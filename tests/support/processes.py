"""Running the project's scripts (examples, the CLI) as real subprocesses, with the developer's settings kept out."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

#: The repository's root (``examples/``, ``benchmarks/``, ``docs/``).
ROOT = Path(__file__).resolve().parents[2]

#: Variables that configure credentials or rpcframework/DIRAC: a developer's shell must not change what a test sees.
_CONFIGURING = ("X509_", "RPCFRAMEWORK_", "DIRAC", "GRID_")


def clean_environment() -> dict[str, str]:
    """``os.environ`` without the variables that would configure credentials, rpcframework or DIRAC."""
    return {k: v for k, v in os.environ.items() if not k.startswith(_CONFIGURING)}


def run_example(
    script: str, *args: str, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``examples/<script>`` with this interpreter; output captured as text, never raises on a failed exit."""
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=clean_environment() if env is None else env,
    )


#: ``rpcframework`` on the command line, run by this interpreter.
CLI = [sys.executable, "-m", "rpcframework.cli.main"]


class ServeProcess:
    """A running ``rpcframework serve``: its process and the URL lines it printed first."""

    def __init__(self, proc: subprocess.Popen[str], urls: list[str]) -> None:
        self.proc = proc
        self.urls = urls

    @property
    def url(self) -> str:
        return self.urls[0]

    @property
    def port(self) -> int:
        return int(self.url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])

    def terminate(self, timeout: float = 10.0) -> tuple[int, str]:
        """SIGTERM, then the exit status and stderr (an error if it does not stop in ``timeout``)."""
        self.proc.send_signal(signal.SIGTERM)
        _out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, err


def _read_lines(proc: subprocess.Popen[str], count: int, timeout: float) -> list[str]:
    lines: list[str] = []

    def reader() -> None:
        assert proc.stdout is not None
        for _ in range(count):
            line = proc.stdout.readline()
            if not line:
                return
            lines.append(line.strip())

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    thread.join(timeout)
    return lines


def spawn_serve(
    args: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    procs: list[subprocess.Popen[str]],
    lines: int = 1,
    timeout: float = 30.0,
) -> ServeProcess:
    """Start ``rpcframework serve <args>`` (added to ``procs``, for :func:`reap`) and wait for its first ``lines``
    URL lines; a server that prints fewer in ``timeout`` is killed and the test fails with its stderr."""
    proc = subprocess.Popen(
        [*CLI, "serve", *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    procs.append(proc)
    urls = _read_lines(proc, lines, timeout)
    if len(urls) != lines:
        proc.kill()
        _out, err = proc.communicate(timeout=10)
        raise AssertionError(f"serve printed {urls!r}; exit {proc.returncode}; stderr:\n{err}")
    return ServeProcess(proc, urls)


def reap(procs: list[subprocess.Popen[str]]) -> None:
    """Kill what is still running and collect every process (no zombie, no open pipe)."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
