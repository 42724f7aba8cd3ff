"""``rpcframework transfer send|receive|send-bulk|receive-bulk|list`` as real subprocesses against a
``rpcframework serve`` of a store handler written at test time (127.0.0.1, ``--port 0``, killed afterwards)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.transfer_kit import sha256

from rpcframework.transfer import partial_path

CLI_ARGS = ("-m", "rpcframework.cli.main")
MIB = 1024 * 1024

STORE_HANDLER = """
import os
import re
from pathlib import Path

from rpcframework.server import RequestHandler, S_ERROR, S_OK
from rpcframework.transfer import compression_for

STORE = Path(os.environ["TRANSFER_TEST_STORE"])


def safe(name):
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name.startswith("."):
        raise ValueError(name)
    return STORE / name


class StoreHandler(RequestHandler):
    auth_transfer_fromClient = auth_transfer_toClient = ["authenticated"]
    auth_transfer_bulkFromClient = auth_transfer_bulkToClient = auth_transfer_listBulk = ["authenticated"]

    def transfer_fromClient(self, fileId, token, fileSize, helper):
        if token == "refuse":
            return helper.sendError("token refused")
        return helper.networkToFile(safe(fileId), max_size=64 * 1024 * 1024)

    def transfer_toClient(self, fileId, token, helper):
        path = safe(fileId)
        if not path.is_file():
            return helper.sendError(f"No such file {fileId}")
        return helper.fileToNetwork(path)

    def transfer_bulkFromClient(self, bulkId, token, bulkSize, helper):
        target = safe(bulkId)
        target.mkdir(exist_ok=True)
        return helper.networkToBulk(target, compression_for(bulkId))

    def transfer_bulkToClient(self, bulkId, token, helper):
        return helper.bulkToNetwork(sorted(safe(bulkId).iterdir()), compression_for(bulkId))

    def transfer_listBulk(self, bulkId, token, helper):
        source = safe(bulkId)
        if not source.is_dir():
            return S_ERROR(f"No such bulk {bulkId}")
        return S_OK(sorted(p.name for p in source.iterdir()))
"""


@dataclass(frozen=True)
class StoreServer:
    url: str
    store: Path


@pytest.fixture(scope="module")
def store_server(cli_env: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreServer]:
    """One ``rpcframework serve transfer_store.py:StoreHandler`` for the module."""
    import sys

    store = tmp_path_factory.mktemp("transfer-store")
    (cli_env.root / "transfer_store.py").write_text(STORE_HANDLER)
    env = dict(cli_env.env, TRANSFER_TEST_STORE=str(store))
    args = ["transfer_store.py:StoreHandler", "--name", "Test/Store", "--port", "0", "--config", "registry.cfg"]
    proc = subprocess.Popen(
        [sys.executable, *CLI_ARGS, "serve", *args],
        cwd=cli_env.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(proc.stdout.readline() if proc.stdout else ""))
        reader.start()
        reader.join(15.0)
        if not line or not line[0].strip():
            proc.kill()
            raise AssertionError(f"serve did not start: {proc.communicate(timeout=5)[1]}")
        yield StoreServer(line[0].strip(), store)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=5)


def _transfer(cli_env: Any, *args: str) -> Any:
    return cli_env.run("transfer", *args)


def test_send_and_receive_json(cli_env: Any, store_server: StoreServer, tmp_path: Path) -> None:
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(3 * MIB + 7))
    sent = _transfer(cli_env, "send", store_server.url, str(source), "cli-data.bin")
    assert sent.code == 0, sent.err
    envelope = json.loads(sent.out)
    assert envelope["OK"] is True and envelope["Value"] == 3 * MIB + 7
    assert envelope["bytes"] == 3 * MIB + 7 and envelope["seconds"] > 0 and envelope["MiB/s"] > 0
    assert sha256(store_server.store / "cli-data.bin") == sha256(source)
    assert sent.err == ""  # stderr is not a terminal: no progress bar

    dest = tmp_path / "back.bin"
    received = _transfer(cli_env, "receive", store_server.url, "cli-data.bin", str(dest), "--backend", "m2crypto")
    assert received.code == 0, received.err
    assert json.loads(received.out)["bytes"] == 3 * MIB + 7
    assert sha256(dest) == sha256(source)

    again = tmp_path / "again.bin"
    sha = _transfer(cli_env, "receive", store_server.url, "cli-data.bin", str(again), "--checksum", "sha256")
    assert sha.code == 0, sha.err
    assert sha256(again) == sha256(source)
    assert _transfer(cli_env, "receive", store_server.url, "cli-data.bin", str(again), "--checksum", "md5").code == 2


def test_text_output_and_forced_progress_bar(cli_env: Any, store_server: StoreServer, tmp_path: Path) -> None:
    source = tmp_path / "p.bin"
    source.write_bytes(os.urandom(2 * MIB))
    result = _transfer(cli_env, "send", store_server.url, str(source), "p.bin", "--output", "text", "--progress")
    assert result.code == 0, result.err
    assert result.out.startswith(f"send: {2 * MIB} bytes in ") and result.out.endswith(" MiB/s)\n")
    assert "send" in result.err and "2.1/2.1 MB" in result.err  # rich's bar, drawn on stderr


def test_resumed_receive(cli_env: Any, store_server: StoreServer, tmp_path: Path) -> None:
    payload = os.urandom(3 * MIB + 11)
    (store_server.store / "resume.bin").write_bytes(payload)
    dest = tmp_path / "resume.bin"
    partial_path(dest).write_bytes(payload[: 2 * MIB])
    result = _transfer(cli_env, "receive", store_server.url, "resume.bin", str(dest), "--resume")
    assert result.code == 0, result.err
    envelope = json.loads(result.out)
    assert envelope["resumed_from"] == 2 * MIB and envelope["bytes"] == MIB + 11
    assert dest.read_bytes() == payload and not partial_path(dest).exists()


@pytest.mark.parametrize("compress", [True, False], ids=["bz2", "tar"])
def test_bulk_send_list_receive(cli_env: Any, store_server: StoreServer, tmp_path: Path, compress: bool) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.log").write_text("alpha" * 100)
    (src / "sub" / "b.txt").write_text("nested")
    flags = () if compress else ("--no-compress",)
    bulk = f"bulk-{compress}"
    sent = _transfer(cli_env, "send-bulk", store_server.url, bulk, str(src / "a.log"), str(src / "sub"), *flags)
    assert sent.code == 0, sent.err
    envelope = json.loads(sent.out)
    assert envelope["OK"] is True and "a.log" in envelope["Value"] and envelope["bytes"] > 0
    listed = _transfer(cli_env, "list", store_server.url, bulk, *flags, "--output", "text")
    assert listed.code == 0, listed.err
    assert listed.out.split() == ["a.log", "sub"]
    dest = tmp_path / "dest"
    dest.mkdir()
    received = _transfer(cli_env, "receive-bulk", store_server.url, bulk, str(dest), *flags)
    assert received.code == 0, received.err
    assert (dest / "a.log").read_text() == "alpha" * 100 and (dest / "sub" / "b.txt").read_text() == "nested"


def test_failures_exit_1_and_usage_exit_2(cli_env: Any, store_server: StoreServer, tmp_path: Path) -> None:
    missing = _transfer(cli_env, "receive", store_server.url, "absent.bin", str(tmp_path / "absent.bin"))
    assert missing.code == 1
    envelope = json.loads(missing.out)
    assert envelope["OK"] is False and "No such file absent.bin" in envelope["Message"]
    assert not (tmp_path / "absent.bin").exists() and os.listdir(tmp_path) == []

    no_source = _transfer(cli_env, "send", store_server.url, str(tmp_path / "nope"), "x", "--output", "text")
    assert no_source.code == 1 and no_source.out == ""
    assert "rpcframework transfer send: error: Cannot read" in no_source.err

    (tmp_path / "f").write_bytes(b"data")
    refused = _transfer(cli_env, "send", store_server.url, str(tmp_path / "f"), "f", "--token", "refuse")
    assert refused.code == 1 and json.loads(refused.out)["Message"] == "token refused"

    unreachable = _transfer(cli_env, "list", "dips://127.0.0.1:1/Test/Store", "b", "--retries", "0")
    assert unreachable.code == 1 and json.loads(unreachable.out)["OK"] is False

    assert _transfer(cli_env, "send", store_server.url, str(tmp_path / "f")).code == 2  # FILE_ID missing
    assert _transfer(cli_env, "copy", store_server.url).code == 2  # no such action
