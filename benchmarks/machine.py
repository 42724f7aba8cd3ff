"""What the numbers were measured on: CPUs, load, Python and TLS library versions, date, git commit."""

from __future__ import annotations

import datetime
import os
import platform
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

__all__ = ["describe_machine", "load_average", "python_loop_ms"]

ROOT = Path(__file__).resolve().parent.parent


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(module: str, attribute: str = "__version__") -> str:
    try:
        imported = __import__(module)
    except Exception as exc:  # an optional library that is absent or fails to load
        return f"not available ({type(exc).__name__})"
    return str(getattr(imported, attribute, "unknown"))


def _pyopenssl_openssl() -> str:
    try:
        from OpenSSL import SSL

        return SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode()
    except Exception as exc:
        return f"unknown ({type(exc).__name__})"


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def _uncommitted_library_files() -> int | None:
    """How many files under rpcframework/ differ from the commit (others may be editing the tree)."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--", "rpcframework"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return len([line for line in out.stdout.splitlines() if line.strip()])


def python_loop_ms() -> float:
    """Milliseconds for a fixed pure-Python loop (best of 3): a speed probe of the CPU we are given right now.

    On a shared or throttled machine it changes between runs; compare it before and after a run, and between runs.
    """
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        total = 0
        for value in range(300_000):
            total += value & 7
        best = min(best, time.perf_counter() - start)
    return round(best * 1000.0, 2)


def load_average() -> list[float]:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return []


def describe_machine() -> dict[str, Any]:
    """Everything docs/performance.md reports about the machine and software."""
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "openssl_stdlib": ssl.OPENSSL_VERSION,
        "pyopenssl": _version("OpenSSL"),
        "pyopenssl_openssl": _pyopenssl_openssl(),
        "m2crypto": _version("M2Crypto", "version"),
        "rpcframework": _version("rpcframework"),
        "git_commit": _git_commit(),
        "uncommitted_library_files": _uncommitted_library_files(),
        "load_average_before": load_average(),
        "python_loop_ms_before": python_loop_ms(),
    }
