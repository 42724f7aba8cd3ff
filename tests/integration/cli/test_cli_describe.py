"""``rpcframework describe`` and ``stub`` against a real ``serve`` (TLS, port 0), and the round trip: generate a
typed client -> ``mypy --strict`` a caller of it -> run the caller against the service."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import rpcframework

CALLABLE = {"add", "describe", "fail", "ping", "say", "slow", "whoami"}  # not secret (no rule), not echo (no rule)

CALLER = """
from calc_client import CalcClient

client = CalcClient({url!r})
total = client.add(2, 40)
if not total["OK"]:
    raise SystemExit(total["Message"])
value: int = total["Value"]
said = client.say("hi", loud=True)
loud = said["Value"]["loud"] if said["OK"] else None
print(value, loud, client.ping()["OK"])
"""

BAD_CALLER = """
from calc_client import CalcClient

CalcClient("x").add("2", 40)
CalcClient("x").say("hi", loud="yes")
"""


def test_describe_json_lists_only_what_the_caller_may_call(cli_env: Any, tls_server: Any) -> None:
    result = cli_env.run("describe", tls_server.url, "--output", "json")
    assert result.code == 0, result.err
    value = json.loads(result.out)
    assert value["service"] == "Test/Calc"
    assert {m["name"] for m in value["methods"]} == CALLABLE
    add = next(m for m in value["methods"] if m["name"] == "add")
    assert [(p["name"], p["type"], p["required"]) for p in add["params"]] == [("a", "int", True), ("b", "int", True)]
    say = next(m for m in value["methods"] if m["name"] == "say")
    assert say["params"][1] == {"name": "loud", "type": "bool", "required": False, "kind": "keyword"}


def test_describe_text_table(cli_env: Any, tls_server: Any) -> None:
    result = cli_env.run("describe", tls_server.url, "--output", "text")
    assert result.code == 0, result.err
    assert result.out.splitlines()[0].startswith("Test/Calc (rpcframework ")
    assert "add       (a: int, b: int)" in result.out
    assert "say       (value: any, *, [loud: bool])" in result.out
    assert "secret" not in result.out


def test_stub_round_trip_generate_mypy_call(cli_env: Any, tls_server: Any) -> None:
    work = cli_env.root / "stubtest"
    work.mkdir(exist_ok=True)
    generated = cli_env.run("stub", tls_server.url, "--class-name", "CalcClient", "-o", "stubtest/calc_client.py")
    assert generated.code == 0, generated.err
    source = (work / "calc_client.py").read_text()
    assert "class CalcClient(Client):" in source and "def add(self, a: int, b: int) -> DReturn:" in source
    assert "def secret" not in source
    (work / "caller.py").write_text(CALLER.format(url=tls_server.url))
    (work / "bad_caller.py").write_text(BAD_CALLER)
    # The editable install's import hook is invisible to mypy: point it at the package's source.
    mypy_env = {**os.environ, "MYPYPATH": str(Path(rpcframework.__file__).parent.parent)}
    mypy = [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir", str(work / ".mypy")]
    checked = subprocess.run(
        [*mypy, "caller.py", "calc_client.py"],
        cwd=work,
        check=False,
        capture_output=True,
        text=True,
        timeout=180,
        env=mypy_env,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    refused = subprocess.run(
        [*mypy, "bad_caller.py"], cwd=work, check=False, capture_output=True, text=True, timeout=180, env=mypy_env
    )
    assert refused.returncode == 1
    for expected in ('"add" of "CalcClient" has incompatible type "str"', '"loud" to "say" of "CalcClient"'):
        assert expected in refused.stdout, refused.stdout
    ran = subprocess.run(
        [sys.executable, "caller.py"],
        cwd=work,
        env=cli_env.env,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["42", "True", "True"]


def test_stub_default_class_name_and_stdout(cli_env: Any, tls_server: Any) -> None:
    result = cli_env.run("stub", tls_server.url)
    assert result.code == 0, result.err
    assert "class CalcClient(Client):" in result.out
    assert cli_env.run("stub", tls_server.url, "--class-name", "not a name").code == 2


@pytest.mark.parametrize(
    ("call_args", "expected"),
    [
        (("add", "1"), "Function add expects at least 2 arguments; add expects (a: int, b: int)"),
        (("add", "1", '"x"'), "expected <class 'int'>; add expects (a: int, b: int)"),
        (("ad", "1", "2"), "Unknown method ad; did you mean add?"),
        (("secrte",), "Unknown method secrte\n"),  # no suggestion of a method this caller may not call
    ],
)
def test_call_mistakes_say_what_the_method_expects(
    cli_env: Any, tls_server: Any, call_args: tuple[str, ...], expected: str
) -> None:
    result = cli_env.run("call", tls_server.url, *call_args, "--output", "text")
    assert result.code == 1
    assert expected in result.err, result.err


def test_describe_of_an_unreachable_service_is_a_clear_error(cli_env: Any) -> None:
    result = cli_env.run("describe", "dips://127.0.0.1:1/Test/Calc", "--timeout", "5")
    assert result.code == 1 and "rpcframework describe: error:" in result.err


def _complete(cli_env: Any, line: str) -> list[str]:
    """What argcomplete answers a shell for ``line`` with the cursor at its end (the bash protocol)."""
    out = cli_env.root / "completion.txt"
    env = {
        **cli_env.env,
        "_ARGCOMPLETE": "1",
        "COMP_LINE": line,
        "COMP_POINT": str(len(line)),
        "_ARGCOMPLETE_IFS": "\n",
        "_ARGCOMPLETE_STDOUT_FILENAME": str(out),
    }
    result = cli_env.run(env=env)
    assert result.code == 0, result.err
    return sorted(word.strip() for word in out.read_text().splitlines() if word.strip())


def test_shell_completion_of_commands_options_and_described_methods(cli_env: Any, tls_server: Any) -> None:
    assert _complete(cli_env, "rpcframework des") == ["describe"]
    assert _complete(cli_env, "rpcframework call --time") == ["--timeout"]
    words = _complete(cli_env, f"rpcframework call {tls_server.url} ")
    assert [w for w in words if not w.startswith("-")] == sorted(CALLABLE)  # never secret; options are offered too
    assert _complete(cli_env, f"rpcframework call {tls_server.url} a") == ["add"]
    assert _complete(cli_env, "rpcframework call dips://127.0.0.1:1/Test/Calc a") == []  # unreachable: nothing
