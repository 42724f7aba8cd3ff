"""Where a DIRAC ``.cfg`` file is wrong: the line and what to fix, for errors diraccfg reports without a line.

diraccfg reads the whole text and then says only "opens more sections than it closes" (or raises a ``KeyError``
for a name used twice). :func:`cfg_error` finds the line again: braces are matched with a stack that remembers
where each section was opened, and any other error is found by parsing ever longer prefixes of the text.
"""

from __future__ import annotations

from diraccfg import CFG

__all__ = ["cfg_error"]

#: Files longer than this are not searched line by line for errors other than unbalanced braces.
_MAX_SEARCH_LINES = 5000


def cfg_error(text: str, error: Exception) -> str:
    """``"<line>: <what is wrong>"`` for the error diraccfg raised on ``text`` (the caller prefixes the file)."""
    lines = text.split("\n")
    braces = _unbalanced_brace(lines)
    if braces is not None:
        return braces
    detail = f"{type(error).__name__}: {error}"
    if isinstance(error, KeyError):
        message = str(error.args[0]) if error.args else ""
        name = message.removesuffix(" key already exists")
        detail = f"{name!r} is defined twice in this section (DIRAC cfg names must be unique within a section)"
    elif "section with empty name" in str(error):
        detail = "a section has no name: write its name on the line before its '{'"
    elif "option with empty name" in str(error):
        detail = "an option has no name: write NAME = VALUE"
    line = _first_failing_line(lines)
    if line is None:
        return f" cannot parse DIRAC cfg: {detail}"
    if isinstance(error, KeyError) and lines[line - 1].strip().startswith("{"):
        line = next((n for n in range(line - 1, 0, -1) if lines[n - 1].strip()), line)  # the name is above
    return f"{line}: {detail}: {lines[line - 1].strip()!r}"


def _unbalanced_brace(lines: list[str]) -> str | None:
    """A ``}`` that closes nothing, or the outermost ``{`` never closed; ``None`` when the braces balance."""
    opened: list[tuple[int, str]] = []  # (line of its name, name) of each section still open
    pending, pending_line = "", 0
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        for char in line:
            if char == "=":  # an option: braces in its value are text
                pending = ""
                break
            if char == "{":
                opened.append((pending_line if pending.strip() else number, pending.strip()))
                pending = ""
            elif char == "}":
                if not opened:
                    return f"{number}: '}}' closes no section (a '}}' too many, or a '{{' missing above it)"
                opened.pop()
            else:
                if not pending.strip():
                    pending_line = number
                pending += char
    if not opened:
        return None
    number, name = opened[0]
    inner = ""
    if len(opened) > 1:
        inner = f"; the last section opened inside it is {opened[-1][1]!r} (line {opened[-1][0]})"
    return f"{number}: section {name!r} is never closed: a '}}' is missing before the end of the file{inner}"


def _first_failing_line(lines: list[str]) -> int | None:
    """The first line after which diraccfg fails for a reason other than sections still open."""
    if len(lines) > _MAX_SEARCH_LINES:
        return None
    for count in range(1, len(lines) + 1):
        try:
            CFG().loadFromBuffer("\n".join(lines[:count]))
        except ValueError as exc:
            if "more sections than it closes" in str(exc):
                continue  # a prefix ends inside a section: not an error yet
            return count
        except Exception:
            return count
    return None
