"""Markdown code blocks as test material: parsing, the ``doctest`` directives, and shell-command splitting.

Imported by ``tests/docs/test_doc_blocks.py`` and ``test_setup_instructions.py``.

**The convention.** A fenced block may be preceded (blank lines allowed in between) by one HTML comment::

    <!-- doctest: skip the reason, in words -->      not run (shell commands are still parse-checked)
    <!-- doctest: file=hello.py -->                   write the block to that file in the page's directory; a Python
                                                     block is then only compiled, not run
    <!-- doctest: serve=HelloHandler:Demo/Hello -->   before this Python block, serve the class HelloHandler (from the
                                                     page's namespace) over TLS and point the configuration's
                                                     /Systems/Demo/URLs/Hello at it
    <!-- doctest: timeout=120 -->                     seconds this block may take (default 60)

Several keys may share one comment (``file=x.toml timeout=90``); ``skip`` must come last (the rest is its reason).
A comment anywhere in a page of the form ``<!-- doctest-page: ports=9135,9136 -->`` makes the harness replace those
port numbers, in every block of the page, with free ports, so examples can show the usual ports and still run
next to other tests.

Inside a Python block, ``print(x)  # prints: TEXT`` promises output: the block's printed output must contain
``TEXT`` (after the port replacement), or the test fails naming the line.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
DIRECTIVE = re.compile(r"^\s*<!--\s*doctest:\s*(?P<body>.*?)\s*-->\s*$")
PAGE_DIRECTIVE = re.compile(r"<!--\s*doctest-page:\s*(?P<body>.*?)\s*-->")

PYTHON_LANGS = frozenset({"python", "py", "python3"})
SHELL_LANGS = frozenset({"bash", "sh", "shell", "console", "shell-session", "zsh"})
TOML_LANGS = frozenset({"toml"})
CFG_LANGS = frozenset({"cfg", "diraccfg"})
INI_LANGS = frozenset({"ini", "systemd"})

HEREDOC = re.compile(r"<<-?\s*(['\"]?)(?P<word>[A-Za-z_][A-Za-z0-9_]*)\1")
EXIT_LINE = re.compile(r"^exit (?P<code>\d+)\s*$")


@dataclass(frozen=True)
class Directives:
    skip: str | None = None  # the reason
    file: str | None = None
    serve: str | None = None  # "Class:System/Component"
    timeout: float = 60.0


@dataclass(frozen=True)
class Block:
    page: str  # relative to the repository root, e.g. "docs/cli.md"
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    directives: Directives = field(default_factory=Directives)

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def first_line(self) -> int:
        """The file line of the block's first content line."""
        return self.line + 1


@dataclass(frozen=True)
class Page:
    path: str
    blocks: tuple[Block, ...]
    ports: tuple[int, ...] = ()


def parse_directives(body: str, where: str) -> Directives:
    values: dict[str, str] = {}
    rest = body
    while rest:
        key, _, tail = rest.partition(" ")
        if key == "skip":
            values["skip"] = tail.strip() or "(no reason given)"
            break
        name, eq, value = key.partition("=")
        if not eq or name not in {"file", "serve", "timeout"}:
            raise ValueError(f"{where}: unknown doctest directive {key!r} (skip REASON, file=, serve=, timeout=)")
        values[name] = value
        rest = tail.strip()
    return Directives(
        skip=values.get("skip"),
        file=values.get("file"),
        serve=values.get("serve"),
        timeout=float(values.get("timeout", 60.0)),
    )


def parse_page(root: Path, relative: str) -> Page:
    """Every fenced block of a Markdown file, with the directive written before it."""
    lines = (root / relative).read_text("utf-8").splitlines()
    blocks: list[Block] = []
    pending: Directives | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        directive = DIRECTIVE.match(line)
        if directive:
            pending = parse_directives(directive["body"], f"{relative}:{index + 1}")
            index += 1
            continue
        fence = FENCE.match(line)
        if not fence:
            if line.strip():
                pending = None  # a directive applies only to the block right after it
            index += 1
            continue
        marker, indent = fence["fence"], len(fence["indent"])
        lang = fence["info"].strip().split(" ")[0].lower() if fence["info"].strip() else ""
        body: list[str] = []
        end = index + 1
        while end < len(lines) and not re.match(rf"^ {{0,3}}{re.escape(marker[0])}{{{len(marker)},}}\s*$", lines[end]):
            body.append(lines[end][indent:] if lines[end][:indent].strip() == "" else lines[end])
            end += 1
        text = "\n".join(body) + "\n"
        blocks.append(Block(relative, index + 1, lang, text, pending or Directives()))
        pending = None
        index = end + 1
    ports: list[int] = []
    for match in PAGE_DIRECTIVE.finditer("\n".join(lines)):
        for item in match["body"].split():
            name, _, value = item.partition("=")
            if name != "ports":
                raise ValueError(f"{relative}: unknown doctest-page directive {item!r} (ports=N,M)")
            ports.extend(int(port) for port in value.split(",") if port)
    return Page(relative, tuple(blocks), tuple(ports))


# ---- shell blocks --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShellCommand:
    line: int  # file line of the command's first line
    text: str  # what the shell runs (may span lines: heredocs, continuations, loops)
    expected: str  # the output the page shows after it (console blocks), never compared verbatim

    @property
    def expected_exit(self) -> int | None:
        """``exit N`` printed by ``...; echo "exit $?"`` in the shown output: the status the page promises."""
        for line in self.expected.splitlines():
            match = EXIT_LINE.match(line.strip())
            if match:
                return int(match["code"])
        return None


def _complete(text: str) -> bool:
    """Whether bash sees a whole command (no open quote, loop or brace)."""
    result = subprocess.run(["bash", "-n", "-c", text], capture_output=True, timeout=10, check=False)
    return result.returncode == 0


def _take_command(lines: list[str], start: int, prompt: bool) -> tuple[str, int]:
    """The command starting at ``lines[start]``; returns it and the index after its last line."""
    first = lines[start][2:] if prompt else lines[start]
    parts = [first]
    index = start + 1
    pending_heredocs = [m["word"] for m in HEREDOC.finditer(first)]

    def continuation(text: str) -> str:
        return text[2:] if prompt and text.startswith("> ") else text

    while True:
        while parts[-1].endswith("\\") and index < len(lines):
            parts.append(continuation(lines[index]))
            pending_heredocs += [m["word"] for m in HEREDOC.finditer(parts[-1])]
            index += 1
        for word in pending_heredocs:
            while index < len(lines):
                parts.append(lines[index])
                index += 1
                if parts[-1].strip() == word:
                    break
        pending_heredocs = []
        text = "\n".join(parts)
        if _complete(text) or index >= len(lines) or (prompt and lines[index].startswith("$ ")):
            return text, index
        parts.append(continuation(lines[index]))
        pending_heredocs += [m["word"] for m in HEREDOC.finditer(parts[-1])]
        index += 1


def shell_commands(block: Block) -> list[ShellCommand]:
    """Split a shell block into commands: ``$ ``-prompted lines (console) or every logical line (script)."""
    lines = block.text.splitlines()
    prompt = any(line.startswith("$ ") for line in lines)
    commands: list[ShellCommand] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        is_command = line.startswith("$ ") if prompt else bool(line.strip()) and not line.lstrip().startswith("#")
        if not is_command:
            index += 1
            continue
        text, after = _take_command(lines, index, prompt)
        output_end = after
        if prompt:
            while output_end < len(lines) and not lines[output_end].startswith("$ "):
                output_end += 1
        expected = "\n".join(lines[after:output_end])
        commands.append(ShellCommand(block.first_line + index, text, expected))
        index = output_end
    return commands


# ---- `rpcframework ...` invocations inside shell commands -----------------------------------------------------

_OPERATORS = {";", "&&", "||", "|", "&", "(", ")", ";;", "|&"}
_REDIRECTS = {">", ">>", "<", "<<", "<<<", ">&", "<&", "&>", ">|"}
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_SUBSTITUTION = re.compile(r"\$\(((?:[^()]|\([^()]*\))*)\)")


def _segments(text: str) -> list[list[str]]:
    text = re.sub(r"(?<![\w-])\d(?=[<>])", "", text)  # a file descriptor number (2>&1), not an argument
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        tokens = list(lexer)
    except ValueError:  # an unbalanced quote: not for us to judge here, bash -n does
        return []
    segments: list[list[str]] = [[]]
    skip_next = False
    for token in tokens:
        if skip_next:
            skip_next = False
            continue
        if token in _OPERATORS:
            segments.append([])
        elif token in _REDIRECTS:
            skip_next = True
        else:
            segments[-1].append(token)
    return [segment for segment in segments if segment]


def rpcframework_invocations(command: str) -> list[list[str]]:
    """The argument lists of every ``rpcframework`` call in a shell command (also inside ``$(...)``)."""
    head = command.replace("\\\n", " ")
    match = HEREDOC.search(command)
    if match:  # the heredoc body is data, not commands
        head = command[: command.index("\n")] if "\n" in command else command
    found: list[list[str]] = []
    for inner in _SUBSTITUTION.findall(head):
        found += rpcframework_invocations(inner)
    for segment in _segments(_SUBSTITUTION.sub("SUBST", head)):
        words = list(segment)
        while words and _ASSIGNMENT.match(words[0]):
            words.pop(0)
        if words and words[0] in {"eval", "exec", "time", "command"}:
            words.pop(0)
        if words and Path(words[0]).name == "rpcframework":
            found.append(words[1:])
    return found
