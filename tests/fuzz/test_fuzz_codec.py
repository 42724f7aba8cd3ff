"""Run the codec's atheris target for a bounded time, seeded with real DIRAC frames, and expect a clean exit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.captures import parse_capture

pytest.importorskip("atheris")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

TARGET = Path(__file__).with_name("fuzz_codec.py")
REPO = Path(__file__).resolve().parents[2]


def write_seeds(corpus: Path) -> None:
    """Selector byte + payload: each DIRAC capture line's frame payloads, for every encoding choice."""
    payloads = {
        payload
        for name in ("dip-json.txt", "dip-dencode.txt")
        for exchange in parse_capture(name)
        for payload in exchange.whole_frames()
    }
    payloads.add(b'{"__t":"m","v":[[{"__t":"t","v":[1,2]},{"__t":"b","v":"AP8="}]]}')
    payloads.add(b"zati2026ei11ei24ei12ei30ei45ei123456ene")
    for index, payload in enumerate(sorted(payloads)):
        for selector in range(8):
            (corpus / f"seed-{index}-{selector}").write_bytes(bytes([selector]) + payload)


def test_atheris_finds_nothing_in_15_seconds(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_seeds(corpus)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    result = subprocess.run(
        [
            sys.executable,
            str(TARGET),
            "-max_total_time=15",
            "-rss_limit_mb=2048",
            "-timeout=10",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        capture_output=True,
        text=True,
        timeout=50,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    tail = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
    assert result.returncode == 0, tail
    assert "Done" in tail or "DONE" in tail, tail
