"""The foundation example (what ./demo runs) completes over every back-end pairing."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.processes import run_example

pytestmark = pytest.mark.timeout(120)


def test_framed_tls_example_runs_every_pairing(tmp_path: Path) -> None:
    completed = run_example("echo/framed_tls.py", "--dir", str(tmp_path / "ca"), timeout=110)
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
