"""Our transfer clients against a hostile server (issue 13): a real TLS server of the test's making, on both back
ends, sends crafted archives, links, pings instead of data, endless data, wrong results. The client must never
write outside what it was asked to write, never keep what it should not, and never wait forever."""

from __future__ import annotations

import contextlib
import io
import os
import stat
import tarfile
from pathlib import Path
from typing import Any

import pytest
from _hostile_server import HostilePeer, HostileServer
from _security_kit import Kit

from rpcframework import TransferClient
from rpcframework.errors import RPCFrameworkError
from rpcframework.transfer import partial_path

pytestmark = pytest.mark.timeout(90)

BACKENDS = [pytest.param("pyopenssl"), pytest.param("m2crypto", marks=pytest.mark.m2crypto)]
OK: dict[str, Any] = {"OK": True, "Value": ""}


def client_for(kit: Kit, server: HostileServer, **options: Any) -> TransferClient:
    options.setdefault("timeout", 10)
    return TransferClient(
        server.url,
        proxyLocation=str(kit.user.proxy_file),
        caLocation=str(kit.ca.cert_dir),
        backend=server.backend.name,
        **options,
    )


def _entries(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def _link_chain_tar(target: str, compression: str) -> bytes:
    """The issue's archive: ``a`` looks inside while ``b`` does not exist yet; ``b -> .`` then turns it outwards."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=f"w:{compression}" if compression else "w") as tar:
        for name, linkname in (("a", "b/" * 12 + "../" * 12 + target.lstrip("/")), ("b", ".")):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, linkname
            tar.addfile(info)
    return buffer.getvalue()


# --- 13.2: bulk extraction ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("compress", [True, False], ids=["bz2", "tar"])
def test_a_bulk_cannot_plant_links_outside_the_target(
    kit: Kit, hostile: Any, tmp_path: Path, backend: str, compress: bool
) -> None:
    victim = tmp_path / "victim.key"
    victim.write_bytes(b"private")
    crafted = _link_chain_tar(str(victim), "bz2" if compress else "")

    def script(peer: HostilePeer) -> None:
        peer.accept_transfer()
        peer.send_data(crafted)
        peer.send_result(OK)

    server = hostile(script, backend)
    dest = tmp_path / "dest"
    dest.mkdir()
    result = client_for(kit, server).receiveBulk(dest, "sandbox", compress=compress)
    assert result["OK"] is False and "refused link 'a'" in result["Message"], result
    assert _entries(dest) == []  # not a link, not a staging directory
    assert victim.read_bytes() == b"private"


# --- 13.3: the resume partial file ----------------------------------------------------------------------------------


def _grant_any_resume_and_send(payload: bytes) -> Any:
    """A server that grants whatever offset is asked and sends ``payload`` from there (errors are the client's)."""

    def script(peer: HostilePeer) -> None:
        info = peer.accept_transfer()
        offset = info[-1].get("offset", 0) if info and isinstance(info[-1], dict) else 0
        with contextlib.suppress(RPCFrameworkError, OSError):
            if offset:
                peer.send_message({"OK": True, "Value": {"offset": offset}})
            peer.send_chunk(payload)
            peer.send_end(payload)
            peer.send_result(OK)

    return script


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_planted_partial_file_never_redirects_a_resumed_download(
    kit: Kit, hostile: Any, tmp_path: Path, backend: str
) -> None:
    victim = tmp_path / "elsewhere" / "id_rsa"
    victim.parent.mkdir()
    victim.write_bytes(b"private key")
    victim.chmod(0o600)
    shared = tmp_path / "shared"
    shared.mkdir()
    dest = shared / "out.dat"
    partial_path(dest).symlink_to(victim)  # planted by another user of the shared directory
    server = hostile(_grant_any_resume_and_send(b"appended by the server"), backend)
    result = client_for(kit, server).receiveFile(dest, "out.dat", resume=True)
    assert result["OK"] is False and "is a symbolic link" in result["Message"], result
    assert victim.read_bytes() == b"private key"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600  # never opened to everyone
    assert not dest.exists()
