"""Our transfer clients against a hostile server (issue 13): a real TLS server of the test's making, on both back
ends, sends crafted archives, links, pings instead of data, endless data, wrong results. The client must never
write outside what it was asked to write, never keep what it should not, and never wait forever."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import stat
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
from support.hostile_server import HostilePeer, HostileServer
from support.processes import clean_environment
from support.security_kit import Kit
from support.waiting import poll

from rpcframework import TransferClient
from rpcframework.cli.main import build_parser
from rpcframework.cli.transfer import size_argument
from rpcframework.errors import RPCFrameworkError
from rpcframework.protocol import Feature
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


# --- 13.4: pings are not progress; the whole transfer is bounded; downloads are capped -------------------------


def _pings_only(phase: str, features: frozenset[Feature] | None) -> Any:
    """A server that, at ``phase``, sends keepalive pings and nothing else; returns how long it kept pinging."""

    def script(peer: HostilePeer) -> float:
        if phase == "before the ack":
            return peer.keep_pinging()
        peer.accept_transfer(features=features)
        if phase == "instead of an ack":
            peer.recv_message()  # the first chunk of an upload, never acknowledged
        elif phase == "instead of the result":
            peer.send_data(b"all the data")
        return peer.keep_pinging()

    return script


PING_CASES = {
    "before the ack": ("receive", None),
    "instead of data": ("receive", None),
    "instead of data, DIRAC mode": ("receive", frozenset()),
    "instead of an ack": ("send", frozenset()),
    "instead of the result": ("receive", None),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(PING_CASES))
def test_a_server_that_only_pings_cannot_hold_a_transfer(
    kit: Kit, hostile: Any, tmp_path: Path, backend: str, case: str
) -> None:
    operation, features = PING_CASES[case]
    server = hostile(_pings_only(case.split(",", maxsplit=1)[0], features), backend)
    client = client_for(kit, server, timeout=2, retries=0)
    source = tmp_path / "up.bin"
    source.write_bytes(os.urandom(3 * 1024 * 1024))
    if operation == "send":
        result = client.sendFile(source, "up.bin")
    else:
        result = client.receiveFile(tmp_path / "down.bin", "down.bin")
    assert result["OK"] is False and "no progress for 2 s" in result["Message"], result
    assert "keepalive pings are not progress" in result["Message"]
    pinged_for = server.wait()
    assert pinged_for and all(seconds < 60 for seconds in pinged_for), server.errors  # the client hung up
    assert not [name for name in _entries(tmp_path) if name.endswith(".part")]


def _stall_mid_chunk(features: frozenset[Feature] | None) -> Any:
    """Start a large chunk (its header and a few bytes: the client reads the rest in place), then send nothing."""

    def script(peer: HostilePeer) -> None:
        peer.accept_transfer(features=features)
        if peer.stream_mode:
            peer.send(b"%d:\x00" % (1024 * 1024 + 1) + b"x" * 1000)
        else:  # DIRAC mode: a chunk is an encoded message, larger than the data it carries
            peer.send(b"%d:" % 1_500_000 + b'{"OK": true, "Value": [true, {"__dCls": "b64", "obj": "')
        for _ in range(100):  # until the client gives up (bounded: 10 s)
            if peer.client_closed(0.1):
                return

    return script


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("features", [None, frozenset()], ids=["stream", "dirac"])
def test_a_server_stalling_in_the_middle_of_a_chunk_gives_an_error_not_an_exception(
    kit: Kit, hostile: Any, tmp_path: Path, backend: str, features: frozenset[Feature] | None
) -> None:
    """Attack run 4: the stall's timeout came out of receiveFile as a BufferError (the chunk's buffer was still
    exported to OpenSSL by the failed read's traceback)."""
    server = hostile(_stall_mid_chunk(features), backend)
    client = client_for(kit, server, timeout=2, retries=0)
    result = client.receiveFile(tmp_path / "down.bin", "down.bin")
    assert result["OK"] is False and "no progress for 2 s" in result["Message"], result
    assert _entries(tmp_path) == []


def _trickle(peer: HostilePeer) -> None:
    """One byte at a time, each well within the client's progress limit, for as long as the client stays."""
    peer.accept_transfer()
    for _ in range(600):
        try:
            peer.send_chunk(b"x")
        except (RPCFrameworkError, OSError):
            return
        if peer.client_closed(0.2):
            return


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_duration_bounds_a_trickling_transfer(kit: Kit, hostile: Any, tmp_path: Path, backend: str) -> None:
    server = hostile(_trickle, backend)
    client = client_for(kit, server, timeout=2, retries=0, max_duration=3)
    result = client.receiveFile(tmp_path / "slow.bin", "slow.bin")
    assert result["OK"] is False and "max_duration (3 s)" in result["Message"], result
    assert _entries(tmp_path) == []


def _endless(peer: HostilePeer) -> None:
    """Data and more data (up to 64 MiB, the kit's bound), never an end."""
    peer.accept_transfer()
    block = os.urandom(1024 * 1024)
    with contextlib.suppress(RPCFrameworkError, OSError):
        for _ in range(64):
            peer.send_chunk(block)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("operation", ["receiveFile", "receiveBulk"])
def test_a_download_stops_at_its_size_cap(kit: Kit, hostile: Any, tmp_path: Path, backend: str, operation: str) -> None:
    server = hostile(_endless, backend)
    client = client_for(kit, server, retries=0)
    dest = tmp_path / "dest"
    dest.mkdir()
    if operation == "receiveFile":
        result = client.receiveFile(dest / "big.bin", "big.bin", max_size=2 * 1024 * 1024)
    else:
        result = client.receiveBulk(dest, "big", max_size=2 * 1024 * 1024)
    assert result == {"OK": False, "Errno": 0, "Message": "Exceeded maximum file size"}, result
    assert _entries(dest) == []  # no file, no temporary file


# --- 13.8: keep a download only when the server says it succeeded; no checksum is no pass ---------------------


def _data_then(
    result: Any, payload: bytes, *, features: frozenset[Feature] | None = None, digest: str | None = None
) -> Any:
    def script(peer: HostilePeer) -> None:
        peer.accept_transfer(features=features)
        for start in range(0, len(payload), 1024 * 1024):
            peer.send_chunk(payload[start : start + 1024 * 1024])
        peer.send_end(payload, digest=digest)
        peer.send_result(result)

    return script


def _small_tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("result.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"42"))
    return buffer.getvalue()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("operation", ["receiveFile", "receiveBulk"])
@pytest.mark.parametrize("features", [None, frozenset()], ids=["stream", "dirac"])
def test_a_download_is_kept_only_when_the_server_result_is_ok(
    kit: Kit,
    hostile: Any,
    tmp_path: Path,
    backend: str,
    operation: str,
    features: frozenset[Feature] | None,
) -> None:
    refusal = {"OK": False, "Errno": 0, "Message": "quota exceeded after all"}
    payload = _small_tar() if operation == "receiveBulk" else b"complete and correct data"
    server = hostile(_data_then(refusal, payload, features=features), backend)
    dest = tmp_path / "dest"
    dest.mkdir()
    client = client_for(kit, server, retries=0)
    if operation == "receiveFile":
        result = client.receiveFile(dest / "out.dat", "out.dat")
    else:
        result = client.receiveBulk(dest, "bulk", compress=False)
    assert result == refusal
    assert _entries(dest) == []  # nothing committed, nothing extracted, no temporary file


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_empty_md5_from_a_dirac_mode_server_is_a_checksum_error(
    kit: Kit, hostile: Any, tmp_path: Path, backend: str
) -> None:
    server = hostile(_data_then(OK, b"unchecked data", features=frozenset(), digest=""), backend)
    result = client_for(kit, server, retries=0).receiveFile(tmp_path / "out.dat", "out.dat")
    assert result == {"OK": False, "Errno": 0, "Message": "Error in the file CRC"}, result
    assert _entries(tmp_path) == []


# --- the command line -------------------------------------------------------------------------------------------


def run_cli(
    kit: Kit, server: HostileServer, *args: str, timeout: float = 60, output: str = "json"
) -> subprocess.CompletedProcess[str]:
    """``rpcframework transfer ...`` as a real subprocess with the kit's proxy and CA directory."""
    env = clean_environment()
    command = [sys.executable, "-m", "rpcframework.cli.main", "transfer", args[0], server.url, *args[1:]]
    command += ["--proxy", str(kit.user.proxy_file), "--ca-dir", str(kit.ca.cert_dir)]
    command += ["--backend", server.backend.name, "--output", output, "--retries", "0"]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, check=False)


def test_the_cli_caps_downloads_by_default() -> None:
    args = build_parser().parse_args(["transfer", "receive", "dips://h:1/S/C", "f", "dest"])
    assert args.max_size == 1024**3
    args = build_parser().parse_args(["transfer", "receive-bulk", "dips://h:1/S/C", "b", "d", "--max-size", "0"])
    assert args.max_size is None and args.max_ratio == 200
    assert size_argument("500M") == 500 * 1024 * 1024 and size_argument("2GiB") == 2 * 1024**3


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("action", ["receive", "receive-bulk"])
def test_the_cli_stops_a_download_at_max_size(
    kit: Kit, hostile: Any, tmp_path: Path, backend: str, action: str
) -> None:
    server = hostile(_endless, backend)
    dest = tmp_path / "dest"
    dest.mkdir()
    target = [str(dest / "big.bin")] if action == "receive" else [str(dest)]
    done = run_cli(kit, server, action, "big", *target, "--max-size", "2M")
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["Message"] == "Exceeded maximum file size"
    assert _entries(dest) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_cli_gives_up_on_a_server_that_only_pings(kit: Kit, hostile: Any, tmp_path: Path, backend: str) -> None:
    server = hostile(_pings_only("instead of data", None), backend)
    done = run_cli(kit, server, "receive", "f", str(tmp_path / "f"), "--timeout", "2")
    assert done.returncode == 1, done.stderr
    assert "no progress for 2 s" in json.loads(done.stdout)["Message"]


def _some_data_then_pings(peer: HostilePeer) -> float:
    peer.accept_transfer()
    peer.send_chunk(os.urandom(3 * 1024 * 1024))
    return peer.keep_pinging()


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigterm_during_a_cli_download_leaves_no_part_file(
    kit: Kit, hostile: Any, tmp_path: Path, backend: str
) -> None:
    server = hostile(_some_data_then_pings, backend)
    dest = tmp_path / "dest"
    dest.mkdir()
    env = clean_environment()
    command = [sys.executable, "-m", "rpcframework.cli.main", "transfer", "receive", server.url, "f", str(dest / "f")]
    command += ["--proxy", str(kit.user.proxy_file), "--ca-dir", str(kit.ca.cert_dir), "--backend", backend]
    command += ["--output", "json", "--timeout", "60"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        # Until the download's temporary file exists (or the command ended early, which the assert reports).
        poll(
            lambda: _entries(dest), lambda names: any(n.endswith(".part") for n in names) or proc.poll() is not None, 30
        )
        assert any(name.endswith(".part") for name in _entries(dest)), (_entries(dest), proc.poll())
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in json.loads(out)["Message"]
    assert _entries(dest) == []


@pytest.mark.parametrize("answer", [5, {"a.txt": 1}, ["a.txt", 3], "a.txt", None], ids=repr)
def test_a_listing_that_is_not_a_list_of_names_is_an_error(kit: Kit, hostile: Any, answer: Any) -> None:
    """Found by the second attack run: ``transfer list --output text`` died with a traceback when the server's
    listing was not a list. Clients get ``S_ERROR`` naming what came; the command exits 1 with that message."""

    def script(peer: HostilePeer) -> None:
        peer.accept_transfer()
        peer.send_result({"OK": True, "Value": answer})

    server = hostile(script, "pyopenssl")
    result = client_for(kit, server, retries=0).listBulk("b")
    assert not result["OK"] and "not a list of member names" in result["Message"], result
    done = run_cli(kit, server, "list", "b", output="text")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "not a list of member names" in done.stderr


# --- the asyncio transfer client against the same hostile server (attack run on the asyncio client) -----------


def async_client_for(kit: Kit, server: HostileServer, **options: Any) -> Any:
    from rpcframework.client.aio import AsyncTransferClient

    options.setdefault("timeout", 10)
    return AsyncTransferClient(
        server.url, proxyLocation=str(kit.user.proxy_file), caLocation=str(kit.ca.cert_dir), **options
    )


def _data_then_close(payload: bytes) -> Any:
    def script(peer: HostilePeer) -> None:
        peer.accept_transfer()
        peer.send_data(payload)  # every byte and a correct end, then no result at all

    return script


@pytest.mark.parametrize("features", [None, frozenset()], ids=["stream", "dirac"])
@pytest.mark.parametrize("ending", ["refusal", "no result"])
def test_an_async_download_is_kept_only_when_the_server_result_is_ok(
    kit: Kit, hostile: Any, tmp_path: Path, features: frozenset[Feature] | None, ending: str
) -> None:
    """Found by the attack run: ``AsyncTransferClient.receiveFile`` renamed the file over the destination before
    it read the server's result, so a server answering ``S_ERROR`` (or nothing) replaced an existing file."""
    import asyncio

    refusal = {"OK": False, "Errno": 0, "Message": "quota exceeded after all"}
    payload = b"the attacker's content"
    script = _data_then(refusal, payload, features=features) if ending == "refusal" else _data_then_close(payload)
    server = hostile(script, "pyopenssl")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "important.cfg").write_bytes(b"kept")
    client = async_client_for(kit, server, retries=0, timeout=3)
    result = asyncio.run(client.receiveFile(dest / "important.cfg", "important.cfg"))
    if ending == "refusal":
        assert result == refusal
    else:
        assert not result["OK"] and "no result from the server" in result["Message"], result
    assert (dest / "important.cfg").read_bytes() == b"kept"
    assert _entries(dest) == ["important.cfg"]


@pytest.mark.parametrize("case", ["before the ack", "instead of data", "instead of the result"])
def test_a_server_that_only_pings_cannot_hold_an_async_download(
    kit: Kit, hostile: Any, tmp_path: Path, case: str
) -> None:
    import asyncio

    server = hostile(_pings_only(case, None), "pyopenssl")
    client = async_client_for(kit, server, timeout=2, retries=0)
    result = asyncio.run(client.receiveFile(tmp_path / "down.bin", "down.bin"))
    assert result["OK"] is False and "no progress for 2 s" in result["Message"], result
    assert "keepalive pings are not progress" in result["Message"]
    pinged_for = server.wait()
    assert pinged_for and all(seconds < 60 for seconds in pinged_for), server.errors
    assert _entries(tmp_path) == []


def test_max_duration_bounds_a_trickling_async_download(kit: Kit, hostile: Any, tmp_path: Path) -> None:
    import asyncio

    server = hostile(_trickle, "pyopenssl")
    client = async_client_for(kit, server, timeout=2, retries=0, max_duration=3)
    result = asyncio.run(client.receiveFile(tmp_path / "slow.bin", "slow.bin"))
    assert result["OK"] is False and "max_duration (3 s)" in result["Message"], result
    assert _entries(tmp_path) == []
