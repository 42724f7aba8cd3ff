"""Bulk extraction against links in any order, hard links, deep names, and decompression bombs: whatever the archive
does, no member resolves outside the target, nothing is left behind, and no refusal names a local path."""

from __future__ import annotations

import bz2
import gzip
import io
import itertools
import lzma
import os
import tarfile
import time
from pathlib import Path

import pytest

from rpcframework.transfer.bulk import ExtractionLimits, UnsafeArchiveError, extract_archive, list_archive
from rpcframework.transfer.decompress import BoundedDecompressor

pytestmark = pytest.mark.timeout(60)


def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]], compression: str = "") -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=f"w:{compression}" if compression else "w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    buffer.seek(0)
    return buffer


def sym(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info, None


def hard(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.LNKTYPE, target
    return info, None


def directory(name: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    return info, None


def regular(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def target(tmp_path: Path) -> Path:
    path = tmp_path / "target"
    path.mkdir()
    (path / "existing.txt").write_bytes(b"keep")
    (tmp_path / "outside").mkdir()
    return path


def _refused(archive: io.BytesIO, target: Path, match: str = "") -> str:
    """Extract, expecting a refusal that leaves the target as it was and names no local path."""
    outside_before = _tree(target.parent / "outside")
    with pytest.raises(UnsafeArchiveError, match=match) as caught:
        extract_archive(archive, target)
    message = str(caught.value)
    assert str(target.parent) not in message and ".bulk-" not in message, message
    assert _tree(target) == ["existing.txt"]  # nothing extracted, no staging directory left
    assert _tree(target.parent / "outside") == outside_before
    return message


# --- links resolved against what the archive makes, in any order ----------------------------------------------------

ESCAPES = {
    # The reproduction: 'a' looks inside while 'b' does not exist yet; 'b -> .' then turns b/b/.. upwards.
    "chain through a later link": [sym("a", "b/b/b/b/b/b/b/b/../../../../../../../../etc/passwd"), sym("b", ".")],
    "chain, links reversed": [sym("b", "."), sym("a", "b/b/b/b/b/b/b/b/../../../../../../../../etc/passwd")],
    "a link to the parent of a subdirectory": [
        directory("sub"),
        sym("a", "sub/up/../outside"),
        sym("sub/up", ".."),
    ],
    "dangling link": [sym("link", "not-in-the-archive")],
    "a loop": [sym("l1", "l2"), sym("l2", "l1")],
    "a link through a file": [regular("f"), sym("l", "f/x")],
}


@pytest.mark.parametrize("case", list(ESCAPES))
def test_links_that_leave_the_target_in_any_order_are_refused(target: Path, case: str) -> None:
    _refused(_tar(ESCAPES[case]), target, "refused link")


def test_a_link_through_a_name_only_the_target_holds_is_refused(target: Path) -> None:
    (target / "mine").symlink_to("../outside")  # the user's own link: an archive may not lean on it
    _refused_with_own_link = _tar([sym("y", "mine/victim")])
    with pytest.raises(UnsafeArchiveError, match="does not lead to a member of the archive"):
        extract_archive(_refused_with_own_link, target)
    assert _tree(target) == ["existing.txt", "mine"]


def test_every_order_of_a_three_link_escape_is_refused(target: Path) -> None:
    pieces = [sym("b", "."), sym("c", "b/b/.."), sym("a", "c/c/../../etc")]
    for order in itertools.permutations(pieces):
        _refused(_tar(list(order)), target, "refused link")


def test_nothing_is_written_through_a_link_the_archive_made(target: Path) -> None:
    (target.parent / "outside" / "victim").write_bytes(b"secret")
    # 'd' is made while sub/up does not exist (tarfile's data filter sees it inside), then sub/up turns it outwards.
    archive = _tar([directory("sub"), sym("d", "sub/up/../outside"), sym("sub/up", ".."), regular("d/victim", b"x")])
    _refused(archive, target, "refused archive member 'd/victim'")
    assert (target.parent / "outside" / "victim").read_bytes() == b"secret"
    # Even through a link that stays inside: every path component is opened without following links.
    _refused(_tar([directory("sub"), sym("d", "sub"), regular("d/f")]), target, "'d' is a link")


def test_links_that_stay_inside_are_extracted(target: Path) -> None:
    archive = _tar(
        [
            directory("./"),
            regular("data/deep/file.txt", b"hi"),
            sym("alias", "data/deep/file.txt"),
            sym("data/deep/self", "."),
            sym("up", "data/deep/self/../deep/file.txt"),
            sym("root", "."),
            hard("copy", "data/deep/file.txt"),
        ]
    )
    names = extract_archive(archive, target)
    assert "up" in names and "copy" in names
    for name in ("alias", "up", "copy", "root/copy"):
        assert (target / name).read_bytes() == b"hi"
    assert os.path.realpath(target / "up") == os.path.realpath(target / "data/deep/file.txt")


# --- hard links, names that change type, deep names ------------------------------------------------------------------

HARD_LINKS = {
    "to a later member": [hard("h", "later.txt"), regular("later.txt")],
    "to a symlink": [regular("f"), sym("s", "f"), hard("h", "s")],
    "to a directory": [directory("d"), hard("h", "d")],
    "to a missing member": [hard("h", "nothing")],
}


@pytest.mark.parametrize("case", list(HARD_LINKS))
def test_hard_links_only_to_earlier_regular_files(target: Path, case: str) -> None:
    message = _refused(_tar(HARD_LINKS[case]), target, "hard link")
    assert "earlier in the archive" in message


@pytest.mark.parametrize(
    "members",
    [
        [directory("d"), sym("d", "elsewhere")],
        [sym("d", "."), directory("d")],
        [regular("f"), directory("f")],
        [regular("f"), sym("f", "existing.txt")],
    ],
    ids=["dir-then-link", "link-then-dir", "file-then-dir", "file-then-link"],
)
def test_a_name_cannot_change_type(target: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> None:
    _refused(_tar(members), target, "already a")


def test_a_later_copy_of_a_file_replaces_it(target: Path) -> None:
    extract_archive(_tar([regular("f", b"old"), regular("f", b"new")]), target)
    assert (target / "f").read_bytes() == b"new"


def test_a_2000_level_name_gets_a_clear_refusal(target: Path) -> None:
    message = _refused(_tar([regular("a/" * 2000 + "f")]), target, "directory levels")
    assert "RecursionError" not in message


def test_a_chain_of_long_name_headers_gets_a_clear_refusal(target: Path) -> None:
    header = tarfile.TarInfo("././@LongLink")
    header.type, header.size = tarfile.GNUTYPE_LONGNAME, 1
    block = header.tobuf(tarfile.GNU_FORMAT) + b"x".ljust(512, b"\0")
    archive = io.BytesIO(block * 2000 + _tar([regular("f")]).getvalue())
    _refused(archive, target, "extended headers in a row")


def test_names_of_the_staging_area_are_reserved(target: Path) -> None:
    with pytest.raises(UnsafeArchiveError, match="reserved"):
        extract_archive(_tar([regular(".bulk-abc/f")]), target)
    assert _tree(target) == ["existing.txt"]


def test_an_interrupted_extraction_is_cleaned_up_by_the_next_one(target: Path) -> None:
    stale = target / ".bulk-left-by-a-killed-process"
    (stale / "half").mkdir(parents=True)
    old = time.time() - 3600
    os.utime(stale, (old, old))
    extract_archive(_tar([regular("new.txt")]), target)
    assert _tree(target) == ["existing.txt", "new.txt"]


# --- decompression bombs --------------------------------------------------------------------------------------------


def _bomb(compression: str, size: int) -> io.BytesIO:
    """A tar of ``size`` zero bytes, compressed as it is written (never held whole in memory)."""
    compressor = {
        "bz2": bz2.BZ2Compressor(9),
        "gz": None,
        "xz": lzma.LZMACompressor(format=lzma.FORMAT_XZ),
    }[compression]
    info = tarfile.TarInfo("zeros")
    info.size = size
    raw = [info.tobuf(tarfile.PAX_FORMAT)]
    zeros = bytes(1024 * 1024)
    if compressor is None:
        out = io.BytesIO()
        with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9) as gz:
            gz.write(raw[0])
            for _ in range(size // len(zeros)):
                gz.write(zeros)
            gz.write(bytes(1024))
        return io.BytesIO(out.getvalue())
    parts = [compressor.compress(raw[0])]
    for _ in range(size // len(zeros)):
        parts.append(compressor.compress(zeros))
    parts.append(compressor.compress(bytes(1024)))
    parts.append(compressor.flush())
    return io.BytesIO(b"".join(parts))


@pytest.mark.parametrize("compression", ["bz2", "gz", "xz"])
def test_a_decompression_bomb_stops_at_once_and_leaves_nothing(target: Path, compression: str) -> None:
    bomb = _bomb(compression, 64 * 1024 * 1024)
    assert len(bomb.getvalue()) < 100_000
    message = _refused(bomb, target, "expands more than 200 times")
    assert "max_ratio" in message  # says what to raise if the archive is genuine


def test_the_uncompressed_stream_is_capped_as_it_is_read() -> None:
    data = bz2.compress(os.urandom(64 * 1024) * 40)  # ~2.5 MiB out of a little more than 64 KiB: ratio ~40
    reader = BoundedDecompressor(io.BytesIO(data), None, max_bytes=1024 * 1024, max_ratio=1000)
    with pytest.raises(UnsafeArchiveError, match="more than 1048576 bytes"):
        while reader.read(65536):
            pass
    assert reader.bytes_out <= 1024 * 1024 + 64 * 1024  # stopped within one step of the cap


def test_a_genuine_compressible_archive_passes(target: Path) -> None:
    text = b"".join(b"line %d of a log that compresses well\n" % i for i in range(100_000))
    names = extract_archive(_tar([regular("job.log", text)], "bz2"), target)
    assert names == ["job.log"] and (target / "job.log").read_bytes() == text


def test_listing_has_the_same_limits(target: Path) -> None:
    with pytest.raises(UnsafeArchiveError, match="expands more than"):
        list_archive(_bomb("bz2", 64 * 1024 * 1024))
    archive = _tar([regular("a" * 10, b"1"), regular("b/" * 300 + "c")])
    with pytest.raises(UnsafeArchiveError, match="directory levels"):
        list_archive(archive, limits=ExtractionLimits())
