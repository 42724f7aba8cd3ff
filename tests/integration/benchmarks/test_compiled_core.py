"""``benchmarks.compiled_core``: what it reads from the benchmarks' output, its table, its machines-only loop, and
its skip when Cython is missing. Builds nothing with Cython and never asserts on speed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from benchmarks import compiled_core
from benchmarks.compiled_core import Measured, machine_calls, parse_callgrind, parse_cpu, table

pytestmark = pytest.mark.timeout(60)


def test_parses_what_benchmarks_instructions_prints() -> None:
    counted = "dips sync: instructions per call over 1200 calls: client + server 418,768; client 184,508\n"
    cpu = "dips sync: CPU µs per call, runs sorted: client + server 120.2, 121.6, 135.1; client 60.8, 61.3, 68.1\n"
    assert parse_callgrind(counted) == (418_768.0, 184_508.0)
    assert parse_cpu(cpu) == [120.2, 121.6, 135.1]
    assert parse_callgrind("valgrind: something else") is None
    assert parse_cpu("") == []


def test_the_table_gives_ratios_against_the_first_row_and_dashes_for_what_was_not_measured() -> None:
    rows = [
        Measured("baseline", 0, [400_000.0, 420_000.0], 180_000.0, [120.0, 130.0, 125.0], 150_000.0, [20.0]),
        Measured("protocol", 7, [380_000.0], 170_000.0, [100.0], 142_500.0, [18.0]),
        Measured("raw pyOpenSSL echo (floor)", 0, [], None, [25.0]),
    ]
    lines = table(rows).splitlines()
    assert len(lines) == 5
    assert lines[2] == "| baseline | 0 | 400,000 / 420,000 | 1.00 | 180,000 | 1.00 | 125.0 | 150,000 | 1.00 | 20.0 |"
    # 380k / 410k (the median of two runs), 170k / 180k, 142.5k / 150k
    assert lines[3] == "| protocol | 7 | 380,000 | 0.93 | 170,000 | 0.94 | 100.0 | 142,500 | 0.95 | 18.0 |"
    assert lines[4] == "| raw pyOpenSSL echo (floor) | 0 | — | — | — | — | 25.0 | — | — | — |"


def test_the_machines_loop_makes_pipelined_echo_calls() -> None:
    measured = machine_calls([3, 5], warmup=2)
    assert [count for count, _ in measured] == [3, 5]
    assert all(seconds >= 0 for _, seconds in measured)


def test_skips_with_a_message_when_cython_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if importlib.util.find_spec("Cython") is not None:
        pytest.skip("Cython is installed here: the skip path cannot be shown")
    monkeypatch.setenv("RPCFRAMEWORK_CYTHON", str(tmp_path))  # a directory without Cython in it
    assert compiled_core.main(["--keep", str(tmp_path / "copies")]) == 0
    assert "skipped: Cython" in capsys.readouterr().out
    assert not (tmp_path / "copies").exists()
