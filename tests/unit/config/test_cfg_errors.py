"""A DIRAC .cfg syntax error names the file, the line and what is wrong (issue 15, item 8)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rpcframework.config import load_file
from rpcframework.config.loaders import load_cfg_text
from rpcframework.errors import ConfigurationError

CASES = [
    # (text, the line reported, what the message says)
    ("Systems\n{\n  A\n  {\n    B = 1\n}\n", 1, "section 'Systems' is never closed: a '}' is missing"),
    ("Systems {\n  A = 1\n", 1, "section 'Systems' is never closed"),
    ("Systems\n{\n  A\n  {\n    B\n    {\n", 1, "the last section opened inside it is 'B' (line 5)"),
    ("Systems\n{\n  A = 1\n  }\n}\n", 5, "'}' closes no section"),
    ("# comment\n\nRegistry\n{\n  bob\n  {\n  }\n  bob\n  {\n  }\n}\n", 8, "'bob' is defined twice in this section"),
    ("A = 1\nB = 2\n = 3\n", 3, "an option has no name"),
    ("A = 1\nA\n{\n}\n", 2, "'A' is defined twice"),
    ("A = 1\n{\n}\n", 2, "a section has no name"),
    ("X\n{\n  URL = dips://h:1/{a}\n}\n{\n}\n", 5, "a section has no name"),
]


@pytest.mark.parametrize(("text", "line", "what"), CASES)
def test_cfg_errors_name_the_line(text: str, line: int, what: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        load_cfg_text(text, "site.cfg")
    message = str(info.value)
    assert message.startswith(f"site.cfg:{line}: "), message
    assert what in message


def test_braces_inside_option_values_are_text() -> None:
    tree = load_cfg_text("S\n{\n  Pattern = {x}\n  Other = }\n}\n", "ok.cfg")
    assert tree.get_str("/S/Pattern") == "{x}"


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "registry.cfg"
    path.write_text("Registry\n{\n  Users\n  {\n")
    with pytest.raises(ConfigurationError, match=rf"{path}:1: section 'Registry' is never closed"):
        load_file(path)
