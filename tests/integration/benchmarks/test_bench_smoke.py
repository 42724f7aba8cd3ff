"""The benchmark runner works end to end on a tiny budget: one raw case and one rpc case, JSON with numbers.

Never asserts on speed: only that every measured figure is there and positive.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.processes import ROOT

pytestmark = pytest.mark.timeout(180)


def test_runner_writes_json_with_positive_numbers(tmp_path: Path) -> None:
    report, stdout = _run_quick("raw_ssl_echo,rpc_reused", tmp_path / "results.json", repetitions=2)
    assert report["machine"]["nproc"] >= 1
    assert set(report["cases"]) == {"raw_ssl_echo", "rpc_reused"}
    for name, entry in report["cases"].items():
        assert "error" not in entry, (name, entry)
        assert len(entry["rates"]) == 2
        assert all(rate > 0 for rate in entry["rates"]), (name, entry["rates"])
        assert entry["calls"] > 0
        assert entry["calls_per_s"]["median"] > 0
        assert entry["p50_us"] > 0
        assert entry["p99_us"] >= entry["p50_us"]
    assert "ratio_to_floor" not in report["cases"]["rpc_reused"]  # its floor (raw_pyopenssl_echo) did not run
    assert "rpc_reused" in stdout  # the table


def _run_quick(cases: str, out: Path, repetitions: int = 1) -> tuple[dict[str, Any], str]:
    """``python -m benchmarks.run`` on a tiny budget; the JSON report and what it printed."""
    args = ["--cases", cases, "--rounds", "1", "--warmup", "0.1", "--repetitions", str(repetitions)]
    args += ["--duration", "0.2", "--json", str(out), "--no-markdown"]
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report: dict[str, Any] = json.loads(out.read_text())
    return report, completed.stdout


def test_runner_grpc_case(tmp_path: Path) -> None:
    """grpc_unary (gRPC over mutual TLS) runs and is measured next to rpc_reused."""
    pytest.importorskip("grpc")
    report, _ = _run_quick("grpc_unary,rpc_reused", tmp_path / "results.json")
    entry = report["cases"]["grpc_unary"]
    assert "error" not in entry, entry
    assert entry["calls"] > 0 and entry["calls_per_s"]["median"] > 0


def test_runner_peer_library_cases_and_the_rpyc_goal(tmp_path: Path) -> None:
    """rpyc_echo and pyro5_echo (the other Python RPC libraries, over mutual TLS) run next to rpc_reused, and the
    issue-20 goal against RPyC is evaluated from the same run."""
    pytest.importorskip("rpyc")
    pytest.importorskip("Pyro5")
    report, _ = _run_quick("rpyc_echo,pyro5_echo,rpc_reused", tmp_path / "results.json")
    for name in ("rpyc_echo", "pyro5_echo"):
        entry = report["cases"][name]
        assert "error" not in entry, (name, entry)
        assert entry["calls"] > 0 and entry["calls_per_s"]["median"] > 0
    goals = {goal["versus"]: goal for goal in report["goals"]}
    assert goals["rpyc_echo"]["case"] == "rpc_reused"
    assert goals["rpyc_echo"]["measured"] > 0  # met or not: no assertion on speed


def test_new_connections_counts_cpu_per_connection_for_rpc_and_raw(tmp_path: Path) -> None:
    """benchmarks.new_connections (DIRAC mode, both sides in one process) prints a positive CPU figure per side."""
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.new_connections", "--count", "5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    for kind in ("rpc", "raw"):
        line = next(line for line in completed.stdout.splitlines() if line.startswith(f"{kind}:"))
        client, server = (float(part.split()[-1]) for part in line.split(":", 1)[1].split(";"))
        assert client > 0 and server > 0, line
