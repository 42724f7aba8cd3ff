"""Fixtures for the file-transfer tests (helpers are in ``support.transfer_kit``)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Path]:
    """The server's store directory, empty at the start of each test and removed after it (the large-transfer
    tests leave 256 MiB files there: do not keep them until pytest prunes old runs)."""
    path = tmp_path / "store"
    path.mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)
