"""Every fenced code block in README.md and docs/*.md runs (or at least parses), so the docs cannot rot.

Per page, in the page's order, in one fresh temporary directory:

* ```python blocks run in one namespace (``tmp_path`` is defined), with a dev CA in ``X509_CERT_DIR``,
  ``X509_USER_PROXY``, ``X509_USER_CERT``/``KEY`` and ``DIRAC_X509_HOST_CERT``/``KEY``; tracebacks point at the
  Markdown file's own lines. A ``# prints: TEXT`` comment promises output: ``TEXT`` must be in what the block
  printed, so an example never shows a value the code does not print;
* ```bash / ```sh / ```console blocks run in one bash session per page (``$ `` lines are commands, the lines after
  them the output shown; ``exit N`` in that output, from ``...; echo "exit $?"``, is checked), with the venv's
  ``bin`` first on ``PATH`` and ``HOME`` in the temporary directory. Background jobs are killed at the end of the
  page. Each command must exit 0 unless its shown output says otherwise. After each shell block the session's
  environment and directory carry over to the Python blocks that follow;
* ```toml and ```cfg blocks are parsed and loaded with ``rpcframework.config.load_file``.

Independently, every ``rpcframework ...`` command in any shell block (skipped or not) must parse with the real
argument parser, so sub-commands and options cannot drift from the docs.

The per-block directives (skip, file=, serve=, timeout=) and the page directive (ports=) are described in
``tests/support/doc_blocks.py``. Pages owned by others get their skips from ``HARNESS_SKIPS`` below instead of a
comment in the page, so that their owners can fix them without fighting over the file.
"""

from __future__ import annotations

import configparser
import contextlib
import io
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tomllib
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from support.doc_blocks import (
    CFG_LANGS,
    INI_LANGS,
    PYTHON_LANGS,
    SHELL_LANGS,
    TOML_LANGS,
    Block,
    Directives,
    Page,
    ShellCommand,
    parse_directives,
    parse_page,
    rpcframework_invocations,
    shell_commands,
)
from support.waiting import poll

from rpcframework.cli.main import build_parser
from rpcframework.config import ConfigTree, load_file
from rpcframework.security.devca import DevCA
from rpcframework.server import Service, ServiceReactor
from rpcframework.transports import TLSConfig

ROOT = Path(__file__).resolve().parents[2]
PAGES = ["README.md", *sorted(f"docs/{path.name}" for path in (ROOT / "docs").glob("*.md"))]

#: (page, a snippet the block contains) -> reason. For pages whose owners are still editing them, and for blocks
#: that cannot run inside a test (they would run this very suite, or take minutes).
HARNESS_SKIPS: dict[tuple[str, str], str] = {
    ("README.md", "./test "): "./demo makes a venv and runs a while; ./test runs this whole suite, this test included",
    ("docs/performance.md", "./bench"): "benchmarks take minutes and rewrite docs/performance.md",
}

#: (page, snippet) -> directive text, for pages that are not this harness's to annotate.
HARNESS_DIRECTIVES: dict[tuple[str, str], str] = {
    ("README.md", "DispatcherClient()"): "serve=DispatcherHandler:DataManagement/Dispatcher",
}

#: Who the dev user is to services the harness starts (``serve=``): a registered user with NormalUser.
DEV_REGISTRY = {
    "DefaultGroup": "users",
    "Users": {"dev-user": {"DN": "/DC=org/DC=rpcframework/OU=Users/CN=dev-user"}},
    "Groups": {"users": {"Users": "dev-user", "Properties": "NormalUser"}},
}

_ENV_NOT_SYNCED = {"PWD", "OLDPWD", "SHLVL", "_", "HOME"}
_TOKEN = re.compile(r"@@DOCTEST-[0-9a-f]+ (BEGIN|END|DONE) .*")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _with_harness_annotations(block: Block) -> Block:
    directives = block.directives
    for (page, snippet), text in HARNESS_DIRECTIVES.items():
        if block.page == page and snippet in block.text:
            directives = parse_directives(text, block.where)
    for (page, snippet), reason in HARNESS_SKIPS.items():
        if block.page == page and snippet in block.text:
            directives = replace(directives, skip=f"harness skip list: {reason}")
    return replace(block, directives=directives)


class ShellSession:
    """One bash process for a page; blocks are sourced into it, their commands framed by markers."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.token = f"@@DOCTEST-{secrets.token_hex(4)}"
        self.log_path = workdir / ".doctest-shell.log"
        self.env_path = workdir / ".doctest-env"
        self.pwd_path = workdir / ".doctest-pwd"
        self.env = env
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            stdin=subprocess.PIPE,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=env,
            start_new_session=True,  # its own process group: background jobs die with it in close()
        )
        self._send("exec 2>&1\ntrap 'kill $(jobs -p) 2>/dev/null' EXIT\n")
        self._blocks = 0

    def _send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def run(self, block: Block, commands: list[ShellCommand]) -> str:
        """Run the commands; returns the log segment of this block; raises AssertionError on failure."""
        self._blocks += 1
        script = self.workdir / f".doctest-block-{self._blocks}.sh"
        parts = []
        for command in commands:
            parts.append(f"printf '\\n{self.token} BEGIN {command.line}\\n'\n{command.text}\n")
            parts.append(f"__doctest_rc=$?\nprintf '\\n{self.token} END {command.line} %s\\n' \"$__doctest_rc\"\n")
        parts.append(f"env -0 > '{self.env_path}'\npwd > '{self.pwd_path}'\n")
        parts.append(f"printf '\\n{self.token} DONE {self._blocks}\\n'\n")
        script.write_text("".join(parts))
        start = self.log_path.stat().st_size
        self._send(f"source '{script}' < /dev/null\n")
        done = f"{self.token} DONE {self._blocks}"
        segment = poll(
            lambda: self.log_path.read_bytes()[start:].decode("utf-8", "replace"),
            lambda seen: done in seen or self.proc.poll() is not None,
            block.directives.timeout,
        )
        if done in segment:
            return segment
        if self.proc.poll() is not None:
            raise AssertionError(f"{block.where}: the shell exited ({self.proc.returncode})\n{segment[-3000:]}")
        raise AssertionError(
            f"{block.where}: block still running after {block.directives.timeout:g} s\n{segment[-3000:]}"
        )

    def state(self) -> tuple[dict[str, str], str]:
        entries = self.env_path.read_bytes().split(b"\0")
        env = dict(entry.decode("utf-8", "replace").partition("=")[::2] for entry in entries if b"=" in entry)
        return env, self.pwd_path.read_text().strip()

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._send("exit\n")
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
            try:
                os.killpg(self.proc.pid, sig)  # the group we created: this page's shell and its jobs only
            except ProcessLookupError:
                break
            poll(lambda: _group_alive(self.proc.pid), lambda alive: not alive, grace)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=2)
        self._log.close()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _command_results(segment: str, token: str) -> dict[int, tuple[int, str]]:
    """Per command line: its exit status and its output, from the markers in the log segment."""
    results: dict[int, tuple[int, str]] = {}
    pattern = re.compile(rf"{re.escape(token)} BEGIN (\d+)\n(.*?)\n{re.escape(token)} END \1 (\d+)", re.S)
    for match in pattern.finditer(segment):
        results[int(match[1])] = (int(match[3]), match[2])
    return results


_PRINTS = re.compile(r"#\s*prints:\s*(?P<text>.+?)\s*$")


def check_printed(block: Block, output: str) -> None:
    """Each ``# prints: TEXT`` comment of a Python block names text the block really printed."""
    for offset, line in enumerate(block.text.splitlines()):
        match = _PRINTS.search(line)
        if match and match["text"] not in output:
            raise AssertionError(
                f"{block.page}:{block.first_line + offset}: the page says this prints {match['text']!r}, "
                f"but the block printed:\n{output[-2000:]}"
            )


class PageRunner:
    """Runs one page's blocks in order; owns the shell session and the services it started."""

    def __init__(self, page: Page, workdir: Path, monkeypatch: pytest.MonkeyPatch, ca: DevCA) -> None:
        self.page = page
        self.workdir = workdir
        self.monkeypatch = monkeypatch
        self.ca = ca
        self.namespace: dict[str, Any] = {"__name__": f"doc_{Path(page.path).stem}", "tmp_path": workdir}
        self.ports = {port: _free_port() for port in page.ports}
        self.shell: ShellSession | None = None
        self.reactors: list[ServiceReactor] = []
        self.ran = 0
        self.skipped: list[str] = []

    def text_of(self, block: Block) -> str:
        text = block.text
        for shown, real in self.ports.items():
            text = re.sub(rf"\b{shown}\b", str(real), text)
        return text

    def run(self, block: Block) -> None:
        block = replace(block, text=self.text_of(block))
        if block.directives.skip:
            if block.lang in PYTHON_LANGS | SHELL_LANGS | TOML_LANGS | CFG_LANGS | INI_LANGS:
                self.skipped.append(f"{block.where} ({block.lang}): {block.directives.skip}")
            return
        if block.directives.file:
            target = Path.cwd() / block.directives.file  # where the page's shell is now
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.text)
        if block.lang in PYTHON_LANGS:
            self.run_python(block)
        elif block.lang in SHELL_LANGS:
            self.run_shell(block)
        elif block.lang in TOML_LANGS | CFG_LANGS:
            self.load_config(block)
        elif block.lang in INI_LANGS:
            parser = configparser.ConfigParser(strict=False, interpolation=None)
            try:
                parser.read_string(block.text)
            except configparser.Error as exc:
                raise AssertionError(f"{block.where}: ```{block.lang} block does not parse: {exc}") from exc
        else:
            return
        self.ran += 1

    def run_python(self, block: Block) -> None:
        try:
            code = compile("\n" * block.line + block.text, str(ROOT / block.page), "exec")
        except SyntaxError as exc:
            raise AssertionError(f"{block.page}:{exc.lineno}: ```python block does not compile: {exc.msg}") from exc
        if block.directives.file:
            return  # written for a later command to run; compiling it checked the syntax
        if block.directives.serve:
            self.serve(block)
        before = set(sys.modules)
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed):
                exec(code, self.namespace)
        except BaseException as exc:
            raise AssertionError(
                f"{block.where}: ```python block failed: {exc!r}\n{traceback.format_exc(limit=-8)}"
            ) from exc
        finally:
            sys.stdout.write(printed.getvalue())
            for name in set(sys.modules) - before:  # modules the page wrote (calc.py, ...) must not leak
                origin = getattr(sys.modules[name], "__file__", None) or ""
                if origin.startswith(str(self.workdir)):
                    del sys.modules[name]
        check_printed(block, printed.getvalue())

    def serve(self, block: Block) -> None:
        spec = block.directives.serve or ""
        class_name, _, name = spec.partition(":")
        handler = self.namespace.get(class_name)
        assert handler is not None, f"{block.where}: serve={spec}: no {class_name} defined by earlier blocks"
        ca = self.ca
        tls = TLSConfig(
            cert_file=str(ca.directory / "hostcert.pem"),
            key_file=str(ca.directory / "hostkey.pem"),
            ca_dir=str(ca.cert_dir),
        )
        service = Service(name, handler, config=ConfigTree.from_dict({"Registry": DEV_REGISTRY}), port=0)
        reactor = ServiceReactor([service], host="127.0.0.1", tls=tls)
        reactor.start()
        self.reactors.append(reactor)
        system, component = name.split("/", 1)
        self.monkeypatch.setenv(f"RPCFRAMEWORK_CFG__Systems__{system}__URLs__{component}", reactor.url(name))
        self.monkeypatch.setenv("X509_CERT_DIR", str(ca.cert_dir))
        self.monkeypatch.setenv("X509_USER_PROXY", str(ca.directory / "proxy.pem"))

    def run_shell(self, block: Block) -> None:
        commands = shell_commands(block)
        if not commands:
            return
        if self.shell is None:
            env = dict(os.environ)
            env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
            env["HOME"] = str(self.workdir / "home")
            env["PYTHONUNBUFFERED"] = "1"
            (self.workdir / "home").mkdir(exist_ok=True)
            self.shell = ShellSession(self.workdir, env)
        segment = self.shell.run(block, commands)
        results = _command_results(segment, self.shell.token)
        for command in commands:
            rc, output = results.get(command.line, (-1, "(no end marker: the command never finished)"))
            expected = command.expected_exit
            expected_rc = 0 if expected is None else None  # with `echo "exit $?"` the line itself exits 0
            failed = (expected_rc is not None and rc != expected_rc) or (
                expected is not None and not re.search(rf"(?m)^exit {expected}\s*$", output)
            )
            if failed:
                clean = _TOKEN.sub("", output).strip()
                raise AssertionError(
                    f"{block.page}:{command.line}: command failed (status {rc}"
                    f"{'' if expected is None else f', the page shows exit {expected}'}):\n"
                    f"$ {command.text}\n--- output ---\n{clean[-3000:]}"
                )
        env, pwd = self.shell.state()
        for key, value in env.items():
            if key not in _ENV_NOT_SYNCED and os.environ.get(key) != value:
                self.monkeypatch.setenv(key, value)
        for key in set(os.environ) - set(env) - _ENV_NOT_SYNCED:
            self.monkeypatch.delenv(key, raising=False)
        if pwd:
            self.monkeypatch.chdir(pwd)

    def load_config(self, block: Block) -> None:
        suffix = ".toml" if block.lang in TOML_LANGS else ".cfg"
        if suffix == ".toml":
            try:
                tomllib.loads(block.text)
            except tomllib.TOMLDecodeError as exc:
                raise AssertionError(f"{block.where}: ```toml block does not parse: {exc}") from exc
        path = Path.cwd() / (block.directives.file or f".doctest-block-{block.line}{suffix}")
        path.write_text(block.text)
        try:
            load_file(path)
        except Exception as exc:
            raise AssertionError(f"{block.where}: ```{block.lang} block does not load: {exc}") from exc

    def close(self) -> None:
        if self.shell is not None:
            self.shell.close()
        for reactor in reversed(self.reactors):
            reactor.stop(timeout=5.0)


@pytest.fixture
def doc_env(
    rpcframework_dev_ca: DevCA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, pytest.MonkeyPatch, DevCA]:
    """A clean configuration environment, the dev CA's credentials in the X509 variables, cwd in ``tmp_path``."""
    for name in list(os.environ):
        if name.startswith(("RPCFRAMEWORK_", "X509_", "DIRAC")) or name in {"GRID_PROXY_FILE"}:
            monkeypatch.delenv(name)
    ca = rpcframework_dev_ca
    monkeypatch.setenv("X509_CERT_DIR", str(ca.cert_dir))
    monkeypatch.setenv("X509_USER_PROXY", str(ca.directory / "proxy.pem"))
    monkeypatch.setenv("X509_USER_CERT", str(ca.directory / "usercert.pem"))
    monkeypatch.setenv("X509_USER_KEY", str(ca.directory / "userkey.pem"))
    monkeypatch.setenv("DIRAC_X509_HOST_CERT", str(ca.directory / "hostcert.pem"))
    monkeypatch.setenv("DIRAC_X509_HOST_KEY", str(ca.directory / "hostkey.pem"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path, monkeypatch, ca


@pytest.mark.timeout(600)
@pytest.mark.parametrize("page_path", PAGES)
def test_page_blocks_run(page_path: str, doc_env: tuple[Path, pytest.MonkeyPatch, DevCA]) -> None:
    workdir, monkeypatch, ca = doc_env
    page = parse_page(ROOT, page_path)
    runner = PageRunner(page, workdir, monkeypatch, ca)
    try:
        for block in page.blocks:
            runner.run(_with_harness_annotations(block))
    finally:
        runner.close()
    print(f"{page_path}: {runner.ran} blocks run, {len(runner.skipped)} skipped")
    for line in runner.skipped:
        print(f"  skipped {line}")


@pytest.mark.parametrize("page_path", PAGES)
def test_rpcframework_commands_parse(page_path: str) -> None:
    """Sub-commands and options shown in shell blocks exist (also in skipped blocks)."""
    parser = build_parser()
    for block in parse_page(ROOT, page_path).blocks:
        if block.lang in INI_LANGS:  # systemd units: ExecStart=/path/to/rpcframework ...
            commands = [
                ShellCommand(block.first_line + index, line.partition("=")[2], "")
                for index, line in enumerate(block.text.splitlines())
                if line.startswith(("ExecStart=", "ExecStartPre=", "ExecReload="))
            ]
        elif block.lang in SHELL_LANGS:
            commands = shell_commands(block)
        else:
            continue
        for command in commands:
            for argv in rpcframework_invocations(command.text):
                with contextlib.redirect_stderr(io.StringIO()) as err, contextlib.redirect_stdout(io.StringIO()):
                    try:
                        parser.parse_args(argv)
                        status = 0
                    except SystemExit as exc:
                        status = exc.code if isinstance(exc.code, int) else 2
                if status == 2 and command.expected_exit != 2:
                    pytest.fail(f"{block.page}:{command.line}: rpcframework {' '.join(argv)}\n{err.getvalue()}")
                if command.expected_exit == 2 and status != 2:
                    pytest.fail(f"{block.page}:{command.line}: the page shows a usage error, but it parses: {argv}")


# ---- the harness itself ----------------------------------------------------------------------------------------

SAMPLE = """\
# A page

<!-- doctest-page: ports=9135 -->

<!-- doctest: file=hello.py timeout=5 -->

```python
print("dips://localhost:9135/S/C")
```

```console
$ eval "$(rpcframework ca init ./ca)"
$ cat > x.cfg <<'EOF'
Registry
{
}
EOF
$ for i in 1 2; do
>   echo $i
> done
1
2
$ rpcframework call dips://h:1/S/C m --kw x=bad; echo "exit $?"
exit 2
```

<!-- doctest: skip needs a cluster -->
```bash
rpcframework serve --config x.cfg S/C \\
    --port 9135
```
"""


def test_harness_parses_the_convention(tmp_path: Path) -> None:
    (tmp_path / "page.md").write_text(SAMPLE)
    page = parse_page(tmp_path, "page.md")
    assert page.ports == (9135,)
    python, console, bash = page.blocks
    assert python.directives == Directives(file="hello.py", timeout=5.0) and python.line == 7
    assert bash.directives.skip == "needs a cluster"
    commands = shell_commands(console)
    assert [c.line for c in commands] == [12, 13, 18, 23]
    assert commands[1].text.endswith("EOF") and commands[2].expected == "1\n2"
    assert commands[3].expected_exit == 2
    assert rpcframework_invocations(commands[0].text) == [["ca", "init", "./ca"]]
    assert rpcframework_invocations(commands[3].text) == [["call", "dips://h:1/S/C", "m", "--kw", "x=bad"]]
    (serve,) = shell_commands(bash)
    assert rpcframework_invocations(serve.text) == [["serve", "--config", "x.cfg", "S/C", "--port", "9135"]]
    with pytest.raises(ValueError, match="unknown doctest directive"):
        parse_directives("skipp it", "page.md:1")


def test_harness_reports_page_and_line(tmp_path: Path, doc_env: tuple[Path, pytest.MonkeyPatch, DevCA]) -> None:
    workdir, monkeypatch, ca = doc_env
    (tmp_path / "bad.md").write_text("```console\n$ true\n$ false\n```\n\n```python\nassert 1 == 2\n```\n")
    page = parse_page(tmp_path, "bad.md")
    runner = PageRunner(page, workdir, monkeypatch, ca)
    try:
        with pytest.raises(AssertionError, match=r"bad\.md:3: command failed \(status 1"):
            runner.run(page.blocks[0])
        with pytest.raises(AssertionError, match=r"bad\.md:6: ```python block failed"):
            runner.run(page.blocks[1])
    finally:
        runner.close()


# ---- links ----------------------------------------------------------------------------------------------------

_LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def test_index_links_every_page() -> None:
    index = (ROOT / "docs" / "index.md").read_text("utf-8")
    linked = {match["target"].partition("#")[0] for match in _LINK.finditer(index)}
    missing = sorted(path.name for path in (ROOT / "docs").glob("*.md") if path.name not in linked | {"index.md"})
    assert not missing, f"docs/index.md does not link {missing}"


@pytest.mark.parametrize("page_path", PAGES)
def test_relative_links_resolve(page_path: str) -> None:
    page = ROOT / page_path
    text = re.sub(r"(?s)```.*?```", "", page.read_text("utf-8"))
    for match in _LINK.finditer(text):
        target = match["target"]
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        path = target.partition("#")[0]
        assert (page.parent / path).exists(), f"{page_path}: broken link {target}"


def test_harness_checks_what_a_block_promises_to_print(
    tmp_path: Path, doc_env: tuple[Path, pytest.MonkeyPatch, DevCA]
) -> None:
    workdir, monkeypatch, ca = doc_env
    page_text = (
        "<!-- doctest-page: ports=9135 -->\n\n"
        "```python\nprint('dips://h:9135/S/C')  # prints: dips://h:9135/S/C\n```\n\n"
        "```python\nprint('dips://h:9876/S/C')  # prints: dips://h:9135/S/C\n```\n"
    )
    (tmp_path / "prints.md").write_text(page_text)
    page = parse_page(tmp_path, "prints.md")
    runner = PageRunner(page, workdir, monkeypatch, ca)
    try:
        runner.run(page.blocks[0])  # the port is replaced in the code and in the promise alike
        with pytest.raises(AssertionError, match=r"prints\.md:8: the page says this prints 'dips://h:\d+/S/C'"):
            runner.run(page.blocks[1])
    finally:
        runner.close()
