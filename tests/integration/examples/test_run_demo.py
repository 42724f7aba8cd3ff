"""The main demo (what ./demo runs after framed_tls.py) completes on its own and shows what it says it shows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support.processes import run_example

pytestmark = pytest.mark.timeout(60)


def test_run_demo_calls_two_instances_and_fails_over(tmp_path: Path) -> None:
    # The demo sets the X509_* variables itself; configuration from the environment must not leak in.
    completed = run_example("echo/run_demo.py", "--dir", str(tmp_path), timeout=50)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    out = completed.stdout
    assert "DN /DC=org/DC=rpcframework/OU=Users/CN=dev-user  proxy=True" in out
    assert "user dev-user in group demo_users with properties ['NormalUser']" in out
    assert "S_OK 5" in out  # add(2, 3)
    assert "S_OK 'Bonjour, Ada! (answered for dev-user)'" in out  # the keyword argument arrived
    assert re.search(r"reset\(\).*S_ERROR 'Unauthorized query \( 1111 :", out)
    assert re.search(r"slow\(5, timeout=1\).*S_ERROR 'Connection timed out \( 110 :", out)
    assert "its in-flight slow(0.5) finished first: S_OK" in out
    # After instance A stopped, every call was served by B (whichever URL the client tried first).
    after_stop = out.split("stopping instance A", 1)[1]
    served = re.findall(r"served by (instance [AB])", after_stop)
    assert served == ["instance B"] * 6, served
    assert out.rstrip().endswith("done.")
    assert (tmp_path / "demo.toml").exists() and (tmp_path / "devca" / "proxy.pem").exists()
