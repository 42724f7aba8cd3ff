"""The setup a page shows brings what the page then runs (issue 15, item 9: docs/testing.md ran ``python -m
pytest`` after a setup that did not install pytest).

Each page's install lines (``scripts/venv.sh EXTRAS`` or ``pip install 'rpcframework[EXTRAS]'``) are read from its
shell blocks, skipped ones included, and the extras are resolved through ``pyproject.toml`` (an extra may name
other extras, ``rpcframework[metrics,tracing]``).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from support.doc_blocks import SHELL_LANGS, parse_page

ROOT = Path(__file__).resolve().parents[2]

#: page -> distributions its examples need beyond rpcframework's own dependencies.
NEEDS = {
    "docs/testing.md": {"pytest"},
    "docs/quickstart.md": set(),
}

_VENV = re.compile(r"scripts/venv\.sh\s+['\"]?(?P<extras>[\w,-]+)")
_PIP = re.compile(r"pip install\s+['\"]?rpcframework\[(?P<extras>[\w,-]+)\]")


def _requirements(extras: set[str]) -> set[str]:
    """Distribution names the extras bring, following extras that name other extras of rpcframework."""
    optional = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    found: set[str] = set()
    pending, seen = list(extras), set()
    while pending:
        extra = pending.pop()
        if extra in seen:
            continue
        seen.add(extra)
        assert extra in optional, f"no extra {extra!r} in pyproject.toml"
        for requirement in optional[extra]:
            name = re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower()
            if name == "rpcframework":
                pending += re.findall(r"[\w-]+", requirement.partition("[")[2].partition("]")[0])
            else:
                found.add(name)
    return found


def _install_extras(page: str) -> set[str]:
    extras: set[str] = set()
    for block in parse_page(ROOT, page).blocks:
        if block.lang not in SHELL_LANGS:
            continue
        for match in [*_VENV.finditer(block.text), *_PIP.finditer(block.text)]:
            extras |= set(filter(None, match["extras"].split(",")))
    return extras


@pytest.mark.parametrize("page", sorted(NEEDS))
def test_the_setup_a_page_shows_brings_what_it_runs(page: str) -> None:
    text = (ROOT / page).read_text("utf-8")
    inline = {extra for found in _PIP.findall(text.replace("`", " ")) for extra in found.split(",") if extra}
    extras = _install_extras(page) | inline
    assert extras or not NEEDS[page], f"{page} shows no install line"
    missing = NEEDS[page] - _requirements(extras)
    assert not missing, f"{page}: its setup ({sorted(extras)}) does not install {sorted(missing)}"


def test_testing_page_runs_pytest_after_its_setup() -> None:
    text = (ROOT / "docs" / "testing.md").read_text("utf-8")
    setup, run = text.find("scripts/venv.sh cli,test"), text.find("python -m pytest")
    assert 0 <= setup < run, "docs/testing.md must show how to get pytest before it runs it"
