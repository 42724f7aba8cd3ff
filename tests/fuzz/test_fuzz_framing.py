"""Run the atheris framing/state-machine target for ~15 s in a subprocess; it must exit 0 (no unexpected error)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")

HERE = Path(__file__).parent
CAPTURES = HERE.parent / "interop" / "data"
_FRAME = re.compile(r"^\s+\[frame\] (\d+) B: (b.*)$")
_SENT = re.compile(r"^\s+sent: (b.*)$")


def _seed_streams() -> list[bytes]:
    """Captured client streams: each exchange's C>S frames, re-framed, and error-replies' raw sent bytes."""
    streams: list[bytes] = []
    for name in ("dip-json.txt", "dip-dencode.txt", "transfer-json.txt"):
        current: list[bytes] = []
        section = ""
        for line in (CAPTURES / name).read_text().splitlines():
            if line.startswith("==="):
                if current:
                    streams.append(b"".join(current))
                current = []
            elif "DISET frames" in line:
                section = line.split()[-1]
            elif (m := _FRAME.match(line)) and section.startswith("C>S"):
                payload = ast.literal_eval(m.group(2))
                if len(payload) == int(m.group(1)):
                    current.append(b"%d:%b" % (len(payload), payload))
        if current:
            streams.append(b"".join(current))
    sent: list[bytes] = []
    for line in (CAPTURES / "error-replies.txt").read_text().splitlines():
        if line.startswith("==="):
            if sent:
                streams.append(b"".join(sent))
            sent = []
        elif m := _SENT.match(line):
            sent.append(ast.literal_eval(m.group(1)))
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
