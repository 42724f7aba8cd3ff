"""Run the atheris framing/state-machine target for ~15 s in a subprocess; it must exit 0 (no unexpected error)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support.captures import parse_capture, parse_error_replies
from support.wire import frame

pytest.importorskip("atheris")

HERE = Path(__file__).parent


def _seed_streams() -> list[bytes]:
    """Captured client streams: each exchange's C>S frames (those kept whole), re-framed, and error-replies' raw
    sent bytes."""
    streams: list[bytes] = []
    for name in ("dip-json.txt", "dip-dencode.txt", "transfer-json.txt"):
        for exchange in parse_capture(name):
            sent = zip(exchange.frames["C>S"], exchange.frame_sizes["C>S"], strict=True)
            stream = b"".join(frame(payload) for payload, size in sent if len(payload) == size)
            if stream:
                streams.append(stream)
    streams.extend(b"".join(case.sent) for case in parse_error_replies().values() if case.sent)
    return streams


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_fuzz_framing_for_15_seconds(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, stream in enumerate(_seed_streams()):
        for mode in range(4):
            (corpus / f"seed-{i}-{mode}").write_bytes(bytes([mode, 7 + i]) + stream)
    proc = subprocess.run(
        [sys.executable, str(HERE / "fuzz_framing.py"), "-max_total_time=15", "-rss_limit_mb=2048", str(corpus)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Done" in proc.stderr
