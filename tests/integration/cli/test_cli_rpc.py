"""``rpcframework serve``, ``call``, ``ping``, ``whoami`` and ``check-config`` as real subprocesses.

Every server binds 127.0.0.1 with ``--port 0``; every subprocess runs with a timeout and is killed afterwards
(see conftest.py)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from support.waiting import wait_for

SERVE_CALC = ("handler.py:CalcHandler", "--name", "Test/Calc", "--port", "0", "--config", "registry.cfg")


def _json(out: str) -> Any:
    return json.loads(out)


# -- call against one shared TLS server ---------------------------------------------------------------------------


def test_call_json_args_exit_0(cli_env: Any, tls_server: Any) -> None:
    assert tls_server.url.startswith("dips://127.0.0.1:")
    assert tls_server.url.endswith("/Test/Calc")
    result = cli_env.run("call", tls_server.url, "add", "1", "2")
    assert result.code == 0, result.err
    assert _json(result.out) == {"OK": True, "Value": 3}  # no rpcStub unless --stub


def test_call_plain_string_and_json_values(cli_env: Any, tls_server: Any) -> None:
    plain = cli_env.run("call", tls_server.url, "say", "hello world")
    assert _json(plain.out)["Value"] == {"got": "hello world", "type": "str", "loud": False}
    quoted = cli_env.run("call", tls_server.url, "say", '"5"')
    assert _json(quoted.out)["Value"]["type"] == "str"
    listed = cli_env.run("call", tls_server.url, "say", '[1, {"a": null}]')
    assert _json(listed.out)["Value"]["got"] == [1, {"a": None}]


def test_call_keyword_argument(cli_env: Any, tls_server: Any) -> None:
    result = cli_env.run("call", tls_server.url, "say", "hi", "--kw", "loud=true")
    assert result.code == 0, result.err
    assert _json(result.out)["Value"] == {"got": "hi", "type": "str", "loud": True}


def test_call_s_error_exit_1(cli_env: Any, tls_server: Any) -> None:
    failed = cli_env.run("call", tls_server.url, "fail")
    assert failed.code == 1
    envelope = _json(failed.out)
    assert envelope["OK"] is False and envelope["Errno"] == 5
    assert "it failed on purpose" in envelope["Message"]
    mismatch = cli_env.run("call", tls_server.url, "add", "1", "two")
    assert mismatch.code == 1
    assert "Type mismatch in parameter 1" in _json(mismatch.out)["Message"]


def test_method_without_rule_is_refused(cli_env: Any, tls_server: Any) -> None:
    result = cli_env.run("call", tls_server.url, "secret")
    assert result.code == 1
    envelope = _json(result.out)
    assert envelope["Errno"] == 1111
    assert "no authorization rule" in envelope["Message"]


def test_text_output_and_stub(cli_env: Any, tls_server: Any) -> None:
    text = cli_env.run("call", tls_server.url, "add", "40", "2", "--output", "text")
    assert text.code == 0 and text.out == "42\n"
    refused = cli_env.run("call", tls_server.url, "secret", "--output", "text")
    assert refused.code == 1 and refused.out == ""
    assert "Unauthorized query" in refused.err and "Errno 1111" in refused.err
    stub = _json(cli_env.run("call", tls_server.url, "add", "1", "2", "--stub").out)["rpcStub"]
    assert stub[0][0] == tls_server.url and stub[1:] == ["add", [1, 2]]


def test_usage_errors_exit_2(cli_env: Any, tls_server: Any) -> None:
    bad_json = cli_env.run("call", tls_server.url, "say", "x", "--kw", "loud=yes please")
    assert bad_json.code == 2
    assert "not valid JSON" in bad_json.err
    no_name = cli_env.run("call", tls_server.url, "say", "x", "--kw", "=1")
    assert no_name.code == 2
    assert cli_env.run("call", tls_server.url).code == 2  # METHOD missing


def test_user_certificate_instead_of_proxy(cli_env: Any, tls_server: Any) -> None:
    user = cli_env.ca.default_user()
    result = cli_env.run(
        "whoami", tls_server.url, "--cert", str(user.cert_file), "--key", str(user.key_file), "--output", "json"
    )
    assert result.code == 0, result.err
    value = _json(result.out)["Value"]
    assert value["DN"] == cli_env.user_dn and value["isProxy"] is False


def test_ping_and_whoami_show_the_user_dn(cli_env: Any, tls_server: Any) -> None:
    ping = cli_env.run("ping", tls_server.url)
    assert ping.code == 0, ping.err
    assert "up, service Test/Calc" in ping.out
    assert f"caller DN: {cli_env.user_dn}\n" in ping.out  # the proxy's identity, not the proxy's own subject
    whoami = cli_env.run("whoami", tls_server.url)
    assert whoami.code == 0, whoami.err
    lines = dict(line.split(":", 1) for line in whoami.out.splitlines())
    assert lines["DN"].strip() == cli_env.user_dn
    assert lines["username"].strip() == "dev-user" and lines["group"].strip() == "users"
    assert lines["isProxy"].strip() == "true"
    assert lines["subject"].strip().startswith(cli_env.user_dn + "/CN=")


def test_system_component_resolved_from_configuration(cli_env: Any, tls_server: Any, tmp_path: Any) -> None:
    cfg = tmp_path / "urls.cfg"
    cfg.write_text(f"Systems\n{{\n  Test\n  {{\n    URLs\n    {{\n      Calc = {tls_server.url}\n    }}\n  }}\n}}\n")
    result = cli_env.run("call", "Test/Calc", "add", "2", "2", "--config", str(cfg))
    assert result.code == 0, result.err
    assert _json(result.out)["Value"] == 4


# -- serve ---------------------------------------------------------------------------------------------------------


@pytest.mark.m2crypto
def test_serve_m2crypto_backend(cli_env: Any, start_server: Any) -> None:
    server = start_server(*SERVE_CALC, "--backend", "m2crypto")
    assert server.url.startswith("dips://127.0.0.1:")
    result = cli_env.run("call", server.url, "add", "3", "4", "--backend", "m2crypto")
    assert result.code == 0, result.err
    assert _json(result.out)["Value"] == 7
    code, err = server.terminate()
    assert code == 0, err


def test_serve_plain_and_anonymous_caller(cli_env: Any, start_server: Any) -> None:
    server = start_server(*SERVE_CALC, "--backend", "plain")
    assert server.url.startswith("dip://127.0.0.1:")
    assert _json(cli_env.run("call", server.url, "say", "x").out)["Value"]["got"] == "x"  # auth_say = all
    refused = cli_env.run("call", server.url, "add", "1", "2")  # authenticated: an anonymous dip:// peer is not
    assert refused.code == 1 and _json(refused.out)["Errno"] == 1111
    whoami = cli_env.run("whoami", server.url)
    assert whoami.code == 0 and "anonymous" in whoami.out
    ping = cli_env.run("ping", server.url)
    assert ping.code == 0 and "caller DN: anonymous" in ping.out


def test_sigterm_drains_and_exits_0(cli_env: Any, start_server: Any) -> None:
    import subprocess
    import sys

    server = start_server(*SERVE_CALC, "--drain-timeout", "60")
    marker = Path(cli_env.root) / "slow-started"
    marker.unlink(missing_ok=True)
    slow = subprocess.Popen(
        [sys.executable, "-m", "rpcframework.cli.main", "call", server.url, "slow", "2"],
        cwd=cli_env.root,
        env=cli_env.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: marker.exists() or slow.poll() is not None, timeout=20)
        assert marker.exists(), "the slow call never started on the server"
        # Exits once the call has finished (2 s), long before the 60 s drain timeout: terminate() gives it 30 s.
        code, err = server.terminate(timeout=30)
        assert code == 0, err
        out, _err = slow.communicate(timeout=10)
        assert _json(out) == {"OK": True, "Value": "slept"}  # the running call finished before the exit
    finally:
        if slow.poll() is None:
            slow.kill()
            slow.communicate(timeout=5)


def test_serve_configured_services(cli_env: Any, start_server: Any, tmp_path: Any) -> None:
    cfg = tmp_path / "services.toml"
    cfg.write_text(
        '[Systems.Test.Services.Calc]\nHandlerPath = "handler:CalcHandler"\n'
        '[Systems.Test.Services.Other]\nHandlerPath = "handler.py:CalcHandler"\nProtocol = "dips"\n'
        '[Systems.Test.Services.Other.Authorization]\nsecret = "all"\n'
    )
    server = start_server("--config", str(cfg), "Test/Calc", "Test/Other", "--port", "0", services=2)
    assert server.urls[0].endswith("/Test/Calc") and server.urls[1].endswith("/Test/Other")
    assert server.urls[0].rsplit("/", 2)[0] == server.urls[1].rsplit("/", 2)[0]  # --port with several: shared
    assert cli_env.run("call", server.urls[0], "secret").code == 1
    opened = cli_env.run("call", server.urls[1], "secret")  # the configuration's rule overrides deny-by-default
    assert opened.code == 0 and _json(opened.out)["Value"] == "should never be seen"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nosuchmodule:H", "--name", "Test/X"), "cannot import handler module 'nosuchmodule'"),
        (("handler.py:NotAHandler", "--name", "Test/X"), "is not a RequestHandler subclass"),
        (("handler.py:Missing", "--name", "Test/X"), "handlers there: CalcHandler"),
        (("handler.py:CalcHandler", "--name", "not-a-service"), "service name must be 'System/Component'"),
        (("Test/Unconfigured",), "no handler for Test/Unconfigured"),
    ],
)
def test_serve_bad_inputs(cli_env: Any, args: tuple[str, ...], message: str) -> None:
    result = cli_env.run("serve", *args, "--port", "0", timeout=20)
    assert result.code == 1, result.err
    assert result.out == ""
    assert message in result.err


def test_serve_port_in_use(cli_env: Any) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = cli_env.run("serve", "handler.py:CalcHandler", "--name", "Test/Calc", "--port", str(port), timeout=20)
    assert result.code == 1
    assert result.out == ""
    assert f"cannot listen on 127.0.0.1:{port}" in result.err


def test_unreachable_url(cli_env: Any) -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    result = cli_env.run("call", f"dips://127.0.0.1:{port}/Test/Calc", "add", "1", "2", "--retries", "0")
    assert result.code == 1
    assert f"cannot connect to 127.0.0.1:{port}" in _json(result.out)["Message"]
    text = cli_env.run("ping", f"dips://127.0.0.1:{port}/Test/Calc", "--retries", "0")
    assert text.code == 1 and "cannot connect" in text.err


# -- check-config --------------------------------------------------------------------------------------------------


def test_check_config_shows_sources(cli_env: Any) -> None:
    env = dict(cli_env.env, RPCFRAMEWORK_CFG__DIRAC__Setup="FromEnv")
    result = cli_env.run("check-config", "--config", "registry.cfg", env=env)
    assert result.code == 0, result.err
    out = result.out
    assert "/Registry/Groups/users/Properties = NormalUser  [cfg file registry.cfg]" in out
    assert "/DIRAC/Setup = FromEnv  [environment RPCFRAMEWORK_CFG__DIRAC__Setup]" in out
    assert "/DIRAC/VirtualOrganization = unknown  [default]" in out
    assert f"client: proxy {cli_env.ca.default_user().proxy_file}  [$X509_USER_PROXY]" in out
    assert f"client DN: {cli_env.user_dn} " in out
    assert "[$DIRAC_X509_HOST_CERT/$DIRAC_X509_HOST_KEY]" in out
    assert f"CA directory: {cli_env.ca.cert_dir}  [$X509_CERT_DIR]" in out


def test_check_config_missing_ca_dir_exit_1(cli_env: Any, tmp_path: Any) -> None:
    cfg = tmp_path / "bad.cfg"
    cfg.write_text(f"DIRAC\n{{\n  Security\n  {{\n    CALocation = {tmp_path / 'nowhere'}\n  }}\n}}\n")
    result = cli_env.run("check-config", "--config", str(cfg))
    assert result.code == 1
    assert f"CALocation = {tmp_path / 'nowhere'}  [cfg file {cfg}]" in result.out
    assert "error: CA directory" in result.err and "does not exist" in result.err
