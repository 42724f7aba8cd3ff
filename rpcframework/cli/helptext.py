"""Help text for a terminal: the sub-commands' docstrings are reStructuredText, ``--help`` shows plain words.

The modules under ``rpcframework.cli`` use their docstrings as ``--help`` descriptions, so the docs and the help say
the same thing. :func:`plain_parser` rewrites every description, epilog and help string of a parser tree once, after
the sub-commands are registered: ````literal```` becomes ``literal``, ``:class:`~a.b.Name``` becomes ``Name``, a
paragraph's closing ``::`` a single colon.
"""

from __future__ import annotations

import argparse
import re
import shutil
import textwrap

__all__ = ["plain_parser", "plain_text", "reflow"]

_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`(?P<body>[^`]+)`")
_LITERAL = re.compile(r"``(?P<body>[^`]+)``")
_DEFAULT_ROLE = re.compile(r"(?<![`\w])`(?P<body>[^`\n]+)`(?![`\w])")
_LITERAL_BLOCK = re.compile(r"(?<=\S)::(?=\n)")
_LITERAL_BLOCK_ALONE = re.compile(r"(?m)^(?P<indent>[ \t]*)::\n")


def _role_text(match: re.Match[str]) -> str:
    body = match["body"]
    target = re.search(r"<(?P<target>[^>]+)>$", body)
    if target is not None:  # :ref:`text <target>` -> text
        return body[: target.start()].strip()
    if body.startswith("~"):  # :class:`~a.b.Name` -> Name
        return body[1:].rsplit(".", 1)[-1]
    return body


def plain_text(text: str) -> str:
    """``text`` with its reStructuredText inline markup removed (roles, literals, ``::`` block markers)."""
    text = _ROLE.sub(_role_text, text)
    text = _LITERAL.sub(lambda match: match["body"], text)
    text = _DEFAULT_ROLE.sub(lambda match: match["body"], text)
    text = _LITERAL_BLOCK_ALONE.sub("", text)
    return _LITERAL_BLOCK.sub(":", text)


def reflow(text: str, width: int | None = None) -> str:
    """Re-wrap each paragraph of ``text`` whose lines are not indented (indented ones are examples: kept as they
    are), to ``width`` columns (default: the terminal's, at most 100), so removed markup leaves no ragged lines."""
    if width is None:
        width = max(40, min(100, shutil.get_terminal_size().columns - 2))
    paragraphs = []
    for paragraph in text.strip("\n").split("\n\n"):
        lines = paragraph.splitlines()
        if lines and not any(line.startswith((" ", "\t")) for line in lines):
            paragraphs.append(textwrap.fill(" ".join(line.strip() for line in lines), width))
        else:
            paragraphs.append(paragraph)
    return "\n\n".join(paragraphs)


def plain_parser(parser: argparse.ArgumentParser) -> None:
    """Rewrite ``parser``'s description, epilog and help strings, and its sub-commands', with :func:`plain_text`."""
    for seen in _parsers(parser):
        if seen.description:
            seen.description = reflow(plain_text(seen.description))
        if seen.epilog:
            seen.epilog = reflow(plain_text(seen.epilog))
        for action in seen._actions:
            if isinstance(action.help, str):
                action.help = plain_text(action.help)
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    if isinstance(choice.help, str):
                        choice.help = plain_text(choice.help)


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """``parser`` and every parser below it (sub-commands, their actions), each once."""
    found: list[argparse.ArgumentParser] = []
    pending = [parser]
    while pending:
        current = pending.pop()
        if any(current is known for known in found):
            continue
        found.append(current)
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                pending.extend(action.choices.values())
    return found
