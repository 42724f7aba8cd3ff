"""The stream-transfer CRC-32: ISA-L's values are zlib's, for any split of the data, and zlib's is the fallback."""

from __future__ import annotations

import subprocess
import sys
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rpcframework.protocol import _crc

pytestmark = pytest.mark.timeout(60)


def test_isal_computes_the_crc_where_it_is_installed() -> None:
    pytest.importorskip("isal")
    assert _crc.PROVIDER == "isal"


@settings(max_examples=200, deadline=None)
@given(pieces=st.lists(st.binary(max_size=5000), max_size=8), start=st.integers(0, 0xFFFFFFFF))
def test_chained_crc_equals_zlibs_over_the_whole(pieces: list[bytes], start: int) -> None:
    value = start
    for piece in pieces:
        value = _crc.crc32(memoryview(piece), value)
    assert value == zlib.crc32(b"".join(pieces), start)


def test_large_buffers_agree() -> None:
    data = bytes(range(256)) * 8192 + b"tail"  # 2 MiB + 4: past any vectorised block size
    assert _crc.crc32(data) == zlib.crc32(data)
    assert _crc.crc32(data[1:], _crc.crc32(data[:1])) == zlib.crc32(data)


def test_zlib_is_used_when_isal_cannot_be_imported() -> None:
    script = (
        "import sys, zlib; sys.modules['isal'] = None\n"
        "from rpcframework.protocol import _crc\n"
        "assert _crc.PROVIDER == 'zlib', _crc.PROVIDER\n"
        "assert _crc.crc32(b'123456789') == 0xCBF43926 == zlib.crc32(b'123456789')\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
