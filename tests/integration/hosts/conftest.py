"""The multi-host test bed (network namespaces) for these tests; skipped, saying why, when it cannot run here.

One bed per test session (namespaces ``rpcf<PID>-*``, removed at the end even when tests fail; beds left behind by
runs that died are removed first). Each test gets it back quiet: instances killed, links up and fast.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from benchmarks.netns import TestBed, remove_stale_beds, unavailable_reason


@pytest.fixture(scope="session")
def _bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestBed]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    remove_stale_beds()
    bed = TestBed(tmp_path_factory.mktemp("netns-bed"))
    bed.up()
    try:
        yield bed
    finally:
        bed.down()


@pytest.fixture
def bed(_bed: TestBed) -> Iterator[TestBed]:
    """The test bed: hosts h1-h3 (10.77.0.11-13) and the client host c; see benchmarks/netns.py."""
    try:
        yield _bed
    finally:
        _bed.reset()
