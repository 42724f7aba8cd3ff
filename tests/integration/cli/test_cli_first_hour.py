"""The first hour of a new user (issue 15), through the real ``rpcframework`` command in a subprocess.

Each test is one place where a user used to stop, guess or be misled: advice that does not fix the problem, an
explicit credential silently ignored, a DNS failure labelled "Connection refused" and retried, the wrong setting
named, a silent port holding the command for the whole deadline.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.servers import LoopbackServer

from rpcframework.cli.main import build_parser, main
from rpcframework.security.devca import DevCA

pytestmark = pytest.mark.timeout(120)


def _advised_command(message: str) -> list[str]:
    """The command between backticks in an error's advice, as an argv for this interpreter."""
    start = message.index("`") + 1
    words = shlex.split(message[start : message.index("`", start)])
    assert words[0] == "rpcframework", message
    return words[1:]


# -- advice that works (item 2) ------------------------------------------------------------------------------------


def test_expired_dev_proxy_advice_fixes_it(cli_env: Any, tls_server: Any, tmp_path: Path) -> None:
    # A copy of the session's dev CA (same CA key, so the server trusts it) whose default proxy has expired.
    devca = tmp_path / "devca"
    shutil.copytree(cli_env.ca.directory, devca)
    made = cli_env.run("ca", "proxy", str(devca), "--not-before", "2019-01-01", "--not-after", "2020-01-01")
    assert made.code == 0, made.err
    env = dict(cli_env.env, X509_USER_PROXY=str(devca / "proxy.pem"))
    expired = cli_env.run("whoami", tls_server.url, env=env)
    assert expired.code == 1
    assert "has expired" in expired.err and "ca init" not in expired.err  # init on an existing CA only reuses it
    advice = _advised_command(expired.err)
    assert advice == ["ca", "proxy", str(devca)]
    reused = cli_env.run("ca", "init", str(devca))  # what the quickstart says to run in a new shell
    assert reused.code == 0 and _advised_command(reused.err.split("\n", 1)[1]) == advice  # says the same
    assert cli_env.run(*advice).code == 0  # following the advice ...
    fixed = cli_env.run("whoami", tls_server.url, env=env)
    assert fixed.code == 0, fixed.err  # ... fixes it
    assert "isProxy:" in fixed.out and "true" in fixed.out


def test_expired_user_proxy_and_certificate_advice_fixes_them(cli_env: Any, tls_server: Any, tmp_path: Path) -> None:
    devca = tmp_path / "devca"
    shutil.copytree(cli_env.ca.directory, devca)
    past = ("--not-before", "2019-01-01", "--not-after", "2020-01-01")
    assert cli_env.run("ca", "issue-user", str(devca), "alice", *past).code == 0  # certificate and proxy expired
    proxy = devca / "users" / "alice" / "proxy.pem"
    env = dict(cli_env.env, X509_USER_PROXY=str(proxy))
    for _ in range(2):  # first the certificate is re-issued, then (had only the proxy expired) the proxy
        failed = cli_env.run("whoami", tls_server.url, "--output", "json", env=env)
        if failed.code == 0:
            break
        assert "has expired" in failed.out
        assert cli_env.run(*_advised_command(json.loads(failed.out)["Message"])).code == 0
    else:
        pytest.fail("following the advice twice did not fix the expired credential")
    assert json.loads(failed.out)["Value"]["DN"].endswith("/CN=alice")


# -- an explicit credential that does not exist (item 3) -----------------------------------------------------------


def test_missing_x509_user_proxy_is_an_error_naming_it(cli_env: Any, tls_server: Any, tmp_path: Path) -> None:
    user = cli_env.ca.default_user()
    missing = tmp_path / "nope.pem"
    env = dict(
        cli_env.env,
        X509_USER_PROXY=str(missing),
        X509_USER_CERT=str(user.cert_file),  # a valid fallback that must not be used instead
        X509_USER_KEY=str(user.key_file),
    )
    result = cli_env.run("whoami", tls_server.url, env=env)
    assert result.code == 1, result.out
    assert result.out == ""
    assert f"$X509_USER_PROXY names the proxy file {missing}, which does not exist" in result.err


def test_missing_x509_cert_dir_is_an_error_naming_it(cli_env: Any, tls_server: Any, tmp_path: Path) -> None:
    env = dict(cli_env.env, X509_CERT_DIR=str(tmp_path / "no-such-dir"))
    result = cli_env.run("ping", tls_server.url, env=env)
    assert result.code == 1
    assert f"$X509_CERT_DIR names the trusted-CA directory {tmp_path / 'no-such-dir'}" in result.err


# -- name resolution and the setting used (item 4) -----------------------------------------------------------------

# Stands in for a resolver that knows no ``.invalid`` name (RFC 6761), without sending a DNS query anywhere; every
# other name goes to the real resolver. Records each lookup so the test can count the attempts.
_NO_INVALID_NAMES = """
import os, socket

_real = socket.getaddrinfo


def _getaddrinfo(host, *args, **kwargs):
    if isinstance(host, str) and host.endswith(".invalid"):
        with open(os.environ["LOOKUP_LOG"], "a") as log:
            log.write(host + "\\n")
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return _real(host, *args, **kwargs)


socket.getaddrinfo = _getaddrinfo
"""


def test_unresolvable_host_is_a_name_error_tried_once(cli_env: Any, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_NO_INVALID_NAMES)
    log = tmp_path / "lookups.log"
    python_path = ":".join(filter(None, [str(site), cli_env.env.get("PYTHONPATH", "")]))
    env = dict(cli_env.env, PYTHONPATH=python_path, LOOKUP_LOG=str(log))
    result = cli_env.run("ping", "dips://no-such-host.invalid:9876/Test/Calc", env=env)
    assert result.code == 1
    assert "cannot resolve the host name 'no-such-host.invalid'" in result.err
    assert "Connection refused" not in result.err and "111" not in result.err
    assert log.read_text().splitlines() == ["no-such-host.invalid"]  # one lookup: no pointless retries


def test_unknown_ca_names_the_setting_used(cli_env: Any, tls_server: Any, tmp_path: Path) -> None:
    stranger = DevCA.init(tmp_path / "stranger", key_type="ec")  # trusts nothing the server presents
    given = cli_env.run("ping", tls_server.url, "--ca-dir", str(stranger.cert_dir))
    assert given.code == 1
    assert "unknown CA" in given.err
    assert f"the trusted CA directory is {stranger.cert_dir} (from --ca-dir)" in given.err
    assert "X509_CERT_DIR" not in given.err
    from_env = cli_env.run("ping", tls_server.url, env=dict(cli_env.env, X509_CERT_DIR=str(stranger.cert_dir)))
    assert from_env.code == 1
    assert f"the trusted CA directory is {stranger.cert_dir} (from $X509_CERT_DIR)" in from_env.err


# -- a port that accepts and never answers (item 7) ----------------------------------------------------------------


class SilentPort(LoopbackServer):
    """Accepts TCP connections, counts them, and never sends a byte (a TLS handshake is never answered)."""

    def __init__(self) -> None:
        super().__init__(threaded=False)
        self.connections: list[socket.socket] = []
        self.start()

    def handle(self, sock: socket.socket) -> None:
        self.connections.append(sock)

    def close(self) -> None:
        self.stop()
        for conn in self.connections:
            conn.close()


@pytest.fixture
def silent_port() -> Iterator[SilentPort]:
    port = SilentPort()
    try:
        yield port
    finally:
        port.close()


@pytest.mark.parametrize("backend", ["pyopenssl", pytest.param("m2crypto", marks=pytest.mark.m2crypto)])
def test_silent_port_is_a_handshake_timeout_not_the_call_deadline(
    cli_env: Any, silent_port: SilentPort, backend: str
) -> None:
    url = f"dips://127.0.0.1:{silent_port.port}/Test/Calc"
    result = cli_env.run("ping", url, "--backend", backend, "--handshake-timeout", "1", "--timeout", "60")
    assert result.code == 1
    assert "accepted the connection but did not answer the TLS handshake within 1 s" in result.err
    assert "deadline of the call" not in result.err
    assert len(silent_port.connections) == 1  # not retried: the same silent peer would stay silent


# -- delegation from the command line (item 5) ---------------------------------------------------------------------


def _trusted_host_registry(cli_env: Any, path: Path, *, trusted: bool) -> Path:
    host_dn = cli_env.ca.default_host().dn
    properties = "TrustedHost" if trusted else "NormalUser"
    path.write_text(
        f"""Registry
{{
  DefaultGroup = users
  Users
  {{
    dev-user
    {{
      DN = {cli_env.user_dn}
    }}
  }}
  Groups
  {{
    users
    {{
      Users = dev-user
      Properties = NormalUser
    }}
    admins
    {{
      Users = dev-user
      Properties = ServiceAdministrator
    }}
  }}
  Hosts
  {{
    localhost
    {{
      DN = {host_dn}
      Properties = {properties}
    }}
  }}
}}
"""
    )
    return path


def _host_credentials(cli_env: Any) -> tuple[str, ...]:
    host = cli_env.ca.default_host()
    return ("--cert", str(host.cert_file), "--key", str(host.key_file))


def test_delegate_dn_and_group_from_the_command_line(cli_env: Any, start_server: Any, tmp_path: Path) -> None:
    registry = _trusted_host_registry(cli_env, tmp_path / "trusted.cfg", trusted=True)
    server = start_server("handler.py:CalcHandler", "--name", "Test/Calc", "--port", "0", "--config", str(registry))
    as_user = ("--delegate-dn", cli_env.user_dn, "--delegate-group", "admins", "--output", "json")
    whoami = cli_env.run("whoami", server.url, *_host_credentials(cli_env), *as_user)
    assert whoami.code == 0, whoami.err
    seen = json.loads(whoami.out)["Value"]
    assert (seen["DN"], seen["username"], seen["group"]) == (cli_env.user_dn, "dev-user", "admins")
    called = cli_env.run("call", server.url, "add", "2", "3", *_host_credentials(cli_env), *as_user)
    assert called.code == 0, called.err
    assert json.loads(called.out)["Value"] == 5
    default_group = cli_env.run(
        "whoami", server.url, *_host_credentials(cli_env), "--delegate-dn", cli_env.user_dn, "--output", "json"
    )
    assert json.loads(default_group.out)["Value"]["group"] == "users"


def test_delegation_refused_without_trusted_host(cli_env: Any, start_server: Any, tmp_path: Path) -> None:
    registry = _trusted_host_registry(cli_env, tmp_path / "untrusted.cfg", trusted=False)
    server = start_server("handler.py:CalcHandler", "--name", "Test/Calc", "--port", "0", "--config", str(registry))
    refused = cli_env.run("whoami", server.url, *_host_credentials(cli_env), "--delegate-dn", cli_env.user_dn)
    assert refused.code == 1
    assert "TrustedHost" in refused.err
    group_alone = cli_env.run("whoami", server.url, "--delegate-group", "users")
    assert group_alone.code == 1 and "--delegate-group needs --delegate-dn" in group_alone.err


# -- --help for a terminal (item 6) --------------------------------------------------------------------------------

_MARKUP = ("``", ":class:", ":func:", ":meth:", ":mod:", ":data:", ":attr:", ":ref:")


def _command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield (prefix, parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _command_paths(sub, (*prefix, name))


def test_help_is_plain_text_with_every_option_explained(capsys: pytest.CaptureFixture[str]) -> None:
    paths = list(_command_paths(build_parser()))
    assert len(paths) > 15  # every sub-command and action
    for path, parser in paths:
        assert main([*path, "--help"]) == 0
        shown = capsys.readouterr().out
        for mark in _MARKUP:
            assert mark not in shown, f"rpcframework {' '.join(path)} --help shows {mark!r} markup"
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            name = "/".join(action.option_strings) or action.dest
            assert action.help, f"rpcframework {' '.join(path)}: {name} has no help"
            takes_value = action.nargs != 0
            if action.option_strings and takes_value:
                assert "default" in action.help, f"rpcframework {' '.join(path)}: {name} does not say its default"


# -- python -m rpcframework (item 10) ------------------------------------------------------------------------------


def test_python_dash_m_rpcframework_is_the_command(cli_env: Any, tmp_path: Path) -> None:
    helped = subprocess.run(
        [sys.executable, "-m", "rpcframework", "--help"], capture_output=True, text=True, timeout=30, check=False
    )
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: rpcframework ")
    made = subprocess.run(
        [sys.executable, "-m", "rpcframework", "ca", "init", str(tmp_path / "ca")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=cli_env.env,
    )
    assert made.returncode == 0, made.stderr
    assert "export X509_USER_PROXY=" in made.stdout
    usage = subprocess.run(
        [sys.executable, "-m", "rpcframework", "call"], capture_output=True, text=True, timeout=30, check=False
    )
    assert usage.returncode == 2 and "usage: rpcframework call" in usage.stderr


# -- file modes (issue 13, item 8) ---------------------------------------------------------------------------------


def test_ca_under_umask_000_makes_no_world_writable_directory(cli_env: Any, tmp_path: Path) -> None:
    target = tmp_path / "deep" / "devca"
    made = subprocess.run(
        [sys.executable, "-m", "rpcframework", "ca", "init", str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=cli_env.env,
        umask=0,
    )
    assert made.returncode == 0, made.stderr
    issued = subprocess.run(
        [sys.executable, "-m", "rpcframework", "ca", "issue-user", str(target), "bob"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=cli_env.env,
        umask=0,
    )
    assert issued.returncode == 0, issued.stderr
    paths = [tmp_path / "deep", *sorted(target.rglob("*")), target]
    for path in paths:
        mode = path.stat().st_mode & 0o777
        assert not mode & 0o022, f"{path} has mode {mode:o}"
        if path.name.endswith("key.pem") or path.name == "proxy.pem":
            assert mode == 0o600, f"{path} has mode {mode:o}"


def test_world_writable_proxy_is_refused(cli_env: Any, tls_server: Any, tmp_path: Path) -> None:
    proxy = tmp_path / "proxy.pem"
    shutil.copyfile(cli_env.ca.default_user().proxy_file, proxy)
    proxy.chmod(0o666)
    refused = cli_env.run("whoami", tls_server.url, env=dict(cli_env.env, X509_USER_PROXY=str(proxy)))
    assert refused.code == 1
    assert f"{proxy} holds a private key and is writable by every user (mode 0666)" in refused.err
    assert f"`chmod 600 {proxy}`" in refused.err
    proxy.chmod(0o600)  # following the advice fixes it
    assert cli_env.run("whoami", tls_server.url, env=dict(cli_env.env, X509_USER_PROXY=str(proxy))).code == 0


def test_group_writable_host_key_is_refused_by_serve(cli_env: Any, tmp_path: Path) -> None:
    host = cli_env.ca.default_host()
    key = tmp_path / "hostkey.pem"
    shutil.copyfile(host.key_file, key)
    key.chmod(0o660)
    result = cli_env.run(
        "serve", "handler.py:CalcHandler", "--name", "Test/Calc", "--port", "0",
        "--cert", str(host.cert_file), "--key", str(key), timeout=30,
    )  # fmt: skip
    assert result.code == 1 and result.out == ""
    assert f"{key} holds a private key and is writable by its group (mode 0660)" in result.err


# -- terminal escapes from a hostile server (issue 13, item 6) -----------------------------------------------------

HOSTILE = "\x1b]0;PWNED-TITLE\x07\x1b[2J\x9b31m\u202eevil\rdone"

HOSTILE_HANDLER = f"""
from rpcframework.server import RequestHandler, S_ERROR, S_OK

HOSTILE = {HOSTILE!r}


class HostileHandler(RequestHandler):
    types_value = []
    auth_value = ["all"]

    def export_value(self):
        return S_OK(HOSTILE)

    types_nested = []
    auth_nested = ["all"]

    def export_nested(self):
        return S_OK({{HOSTILE: [HOSTILE, 1]}})

    types_refuse = []
    auth_refuse = ["all"]

    def export_refuse(self):
        return S_ERROR(HOSTILE)

    def export_whoami(self):
        return S_OK({{"DN": HOSTILE, "username": HOSTILE, "properties": [HOSTILE], HOSTILE: HOSTILE}})

    def export_ping(self):
        return S_OK({{"name": HOSTILE, "version": HOSTILE, "load": HOSTILE}})

    auth_transfer_listBulk = ["all"]

    def transfer_listBulk(self, bulkId, token, helper):
        return S_OK([HOSTILE, "plain.txt"])
"""

# Anything a terminal would act on: C0 controls but tab and newline, DEL, C1, bidirectional overrides.
_RAW_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def test_nothing_a_server_sends_reaches_the_terminal_raw(cli_env: Any, start_server: Any, tmp_path: Path) -> None:
    handler = tmp_path / "hostile.py"
    handler.write_text(HOSTILE_HANDLER)
    server = start_server(f"{handler}:HostileHandler", "--name", "Test/Hostile", "--port", "0")
    runs = {
        "call value": ("call", server.url, "value"),
        "call nested": ("call", server.url, "nested"),
        "call refuse": ("call", server.url, "refuse"),
        "ping": ("ping", server.url),
        "whoami": ("whoami", server.url),
        "transfer list": ("transfer", "list", server.url, "bulk"),
    }
    for what, argv in runs.items():
        for mode in ("text", "json"):
            result = cli_env.run(*argv, "--output", mode)
            shown = result.out + result.err
            assert "PWNED-TITLE" in shown, (what, mode, shown)  # the text is shown ...
            raw = _RAW_CONTROL.findall(shown)
            assert not raw, f"{what} --output {mode} wrote raw {raw!r}: {shown!r}"  # ... but never raw
            assert "\\x1b" in shown or "\\u001b" in shown, (what, mode, shown)
    value = json.loads(cli_env.run("call", server.url, "value", "--output", "json").out)["Value"]
    assert value == HOSTILE  # JSON mode escapes without changing the value
    nested = json.loads(cli_env.run("call", server.url, "nested", "--output", "json").out)["Value"]
    assert nested == {HOSTILE: [HOSTILE, 1]}


# -- a .cfg syntax error names file and line (item 8) --------------------------------------------------------------


def test_cfg_syntax_error_names_file_line_and_problem(cli_env: Any, tmp_path: Path) -> None:
    cfg = tmp_path / "site.cfg"
    cfg.write_text("Registry\n{\n  Users\n  {\n    bob\n    {\n      DN = /CN=bob\n    }\n  }\n")  # one '}' short
    checked = cli_env.run("check-config", "--config", str(cfg))
    assert checked.code == 1
    assert f"{cfg}:1: section 'Registry' is never closed: a '}}' is missing before the end of the file" in checked.err
    served = cli_env.run("serve", "handler.py:CalcHandler", "--name", "Test/Calc", "--port", "0", "--config", str(cfg))
    assert served.code == 1 and f"{cfg}:1: section 'Registry' is never closed" in served.err
    cfg.write_text("Registry\n{\n  DefaultGroup = users\n}\n}\n")
    extra = cli_env.run("check-config", "--config", str(cfg))
    assert extra.code == 1 and f"{cfg}:5: '}}' closes no section" in extra.err
