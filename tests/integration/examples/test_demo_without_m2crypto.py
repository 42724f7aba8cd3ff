"""``./demo`` on a bare machine (issue 15, item 1): no OpenSSL headers, no compiler, no root, so no M2Crypto.

The demo must set up its ``.venv`` from wheels only and run, showing the pyOpenSSL and plain pairings and saying how
to add the M2Crypto ones. The slow test runs the real ``./demo`` in a copy of the repository with every compiler
hidden behind a shim that fails (so building M2Crypto, or anything else, is impossible); its ``.venv`` installs from
the same package index ``./test`` uses.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.processes import ROOT, run_example

# M2Crypto cannot be imported: importlib.util.find_spec("M2Crypto") answers None, as without the package.
_NO_M2CRYPTO = "import sys\nsys.modules['M2Crypto'] = None\n"


def _without_m2crypto(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_NO_M2CRYPTO)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH", "")]))
    return env


@pytest.mark.timeout(120)
def test_framed_tls_without_m2crypto_runs_and_says_how_to_add_it(tmp_path: Path) -> None:
    completed = run_example(
        "echo/framed_tls.py", "--dir", str(tmp_path / "ca"), timeout=110, env=_without_m2crypto(tmp_path)
    )
    assert completed.returncode == 0, completed.stderr
    out = completed.stdout
    assert "client pyopenssl -> server pyopenssl" in out and "client plain -> server plain" in out
    assert "m2crypto ->" not in out and "-> server m2crypto" not in out
    assert "M2Crypto is not installed" in out
    assert "libssl-dev" in out and "scripts/venv.sh cli,examples --m2crypto" in out  # what to do, in full
    assert out.rstrip().endswith("done.")


_FAIL = '#!/bin/sh\necho "$0: no compiler on this machine (test shim)" >&2\nexit 1\n'
_COMPILERS = ("cc", "gcc", "c++", "g++", "x86_64-linux-gnu-gcc", "clang", "swig", "swig4.0")
# What ./demo needs from the repository.
_TREE = ("demo", "pyproject.toml", "README.md", "scripts", "rpcframework", "examples")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_demo_runs_from_wheels_without_a_compiler(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    clone.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".venv")
    for name in _TREE:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, clone / name, ignore=ignore)
        else:
            shutil.copy2(source, clone / name)
    shims = tmp_path / "no-compiler"
    shims.mkdir()
    for name in _COMPILERS:
        (shims / name).write_text(_FAIL)
        (shims / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env = {k: v for k, v in env.items() if not k.startswith(("X509_", "RPCFRAMEWORK_", "DIRAC"))}
    python_dir = str(Path(sys.base_prefix) / "bin")  # a python3 outside any venv, as on a fresh machine
    env.update(PATH=os.pathsep.join([str(shims), python_dir, env.get("PATH", "")]), CC=str(shims / "cc"))
    env["CXX"] = str(shims / "c++")
    completed = subprocess.run(
        [str(clone / "demo")], cwd=clone, capture_output=True, text=True, timeout=840, check=False, env=env
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-4000:]
    assert "client pyopenssl -> server pyopenssl" in completed.stdout
    assert "M2Crypto is not installed" in completed.stdout
    assert "-> server m2crypto" not in completed.stdout
    assert "failover" in completed.stdout.lower()  # the later parts of the demo ran too
    probe = subprocess.run(
        [str(clone / ".venv" / "bin" / "python"), "-c", "import M2Crypto"], capture_output=True, timeout=60, check=False
    )
    assert probe.returncode != 0  # nothing was built: the demo ran on wheels only
