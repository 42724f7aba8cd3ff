"""The foundation example (what ./demo runs) completes over every back-end pairing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.timeout(120)


def test_framed_tls_example_runs_every_pairing(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "echo" / "framed_tls.py"), "--dir", str(tmp_path / "ca")],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    out = completed.stdout
    for pair in (
        "client pyopenssl -> server pyopenssl",
        "client m2crypto -> server pyopenssl",
        "client pyopenssl -> server m2crypto",
        "client plain -> server plain",
    ):
        assert pair in out
    assert "server saw: /DC=org/DC=rpcframework/OU=Users/CN=dev-user (proxy)" in out
    assert "client saw: /DC=org/DC=rpcframework/OU=Hosts/CN=localhost (certificate)" in out
    assert out.rstrip().endswith("done.")
    assert (tmp_path / "ca" / "proxy.pem").exists()
