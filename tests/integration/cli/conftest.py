"""Fixtures for the command-line tests: the plugin's session dev CA, a handler module and a registry written at test
time, and helpers that run ``rpcframework`` as a real subprocess (always with a timeout, always killed afterwards)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.processes import CLI, ServeProcess, clean_environment, reap, spawn_serve

from rpcframework.security.devca import DevCA

RUN_TIMEOUT = 30.0
START_TIMEOUT = 15.0

HANDLER_SOURCE = """
import time
from rpcframework.server import RequestHandler, S_ERROR, S_OK


class CalcHandler(RequestHandler):
    types_add = [int, int]
    auth_add = ["authenticated"]

    def export_add(self, a, b):
        return S_OK(a + b)

    types_say = [None]
    kwtypes_say = {"loud": bool}
    auth_say = ["all"]

    def export_say(self, value, *, loud=False):
        return S_OK({"got": value, "type": type(value).__name__, "loud": loud})

    types_fail = []
    auth_fail = ["all"]

    def export_fail(self):
        return S_ERROR(5, "it failed on purpose")

    types_slow = [(int, float)]
    auth_slow = ["all"]

    def export_slow(self, seconds):
        open("slow-started", "w").close()  # lets a test wait until the call really runs (cwd is the test root)
        time.sleep(seconds)  # fault injection: a call that lasts, in the server process (bounded by its argument)
        return S_OK("slept")

    types_secret = []  # no auth_ rule and none configured: refused (deny by default)

    def export_secret(self):
        return S_OK("should never be seen")


class NotAHandler:
    pass
"""


@dataclass(frozen=True)
class CliEnv:
    ca: DevCA
    root: Path  # working directory of every subprocess; holds handler.py and registry.cfg
    env: dict[str, str]

    @property
    def user_dn(self) -> str:
        return self.ca.default_user().dn

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = RUN_TIMEOUT) -> Result:
        proc = subprocess.run(
            [*CLI, *args],
            check=False,
            cwd=self.root,
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def _registry_cfg(user_dn: str) -> str:
    return f"""Registry
{{
  DefaultGroup = users
  Users
  {{
    dev-user
    {{
      DN = {user_dn}
    }}
  }}
  Groups
  {{
    users
    {{
      Users = dev-user
      Properties = NormalUser
    }}
  }}
}}
"""


@pytest.fixture(scope="session")
def cli_env(rpcframework_dev_ca: DevCA, tmp_path_factory: pytest.TempPathFactory) -> CliEnv:
    root = tmp_path_factory.mktemp("cli")
    ca = rpcframework_dev_ca
    (root / "handler.py").write_text(HANDLER_SOURCE)
    (root / "registry.cfg").write_text(_registry_cfg(ca.default_user().dn))
    env = clean_environment()
    user, host = ca.default_user(), ca.default_host()
    assert user.proxy_file is not None
    env.update(
        X509_CERT_DIR=str(ca.cert_dir),
        X509_USER_PROXY=str(user.proxy_file),
        DIRAC_X509_HOST_CERT=str(host.cert_file),
        DIRAC_X509_HOST_KEY=str(host.key_file),
        PYTHONUNBUFFERED="1",
    )
    return CliEnv(ca, root, env)


Server = ServeProcess


def _spawn(cli_env: CliEnv, procs: list[subprocess.Popen[str]], args: tuple[str, ...], services: int) -> Server:
    return spawn_serve(
        list(args), cwd=cli_env.root, env=cli_env.env, procs=procs, lines=services, timeout=START_TIMEOUT
    )


@pytest.fixture
def start_server(cli_env: CliEnv) -> Iterator[Callable[..., Server]]:
    """``start_server(*serve_args, services=1)``: start ``rpcframework serve`` and wait for its URL lines."""
    procs: list[subprocess.Popen[str]] = []
    try:
        yield lambda *args, services=1: _spawn(cli_env, procs, args, services)
    finally:
        reap(procs)


@pytest.fixture(scope="module")
def tls_server(cli_env: CliEnv) -> Iterator[Server]:
    """One pyOpenSSL ``serve`` of handler.py:CalcHandler with the registry, shared by a module's call tests."""
    procs: list[subprocess.Popen[str]] = []
    try:
        yield _spawn(
            cli_env,
            procs,
            ("handler.py:CalcHandler", "--name", "Test/Calc", "--port", "0", "--config", "registry.cfg"),
            1,
        )
    finally:
        reap(procs)
