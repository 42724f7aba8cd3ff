"""FileHelper end to end over in-memory channels: a client thread and a server thread, both modes."""

from __future__ import annotations

import io
import os

import pytest

from rpcframework.protocol.messages import Extensions, Feature, FileInfo, TransferDirection
from rpcframework.protocol.transfer import CHECKSUM_ERROR, CHUNK_SIZE, EXCEEDED_MAX_SIZE
from rpcframework.returnvalues import S_ERROR, S_OK
from rpcframework.transfer.atomic import partial_path

STREAM = Extensions(features=frozenset({Feature.STREAM, Feature.RESUME}))
MODES = pytest.mark.parametrize("extensions", [None, STREAM], ids=["dirac", "stream"])
PAYLOAD = os.urandom(2 * CHUNK_SIZE + 12345)


@MODES
def test_send_file_to_a_path(run, tmp_path, extensions):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    store = tmp_path / "store"
    store.mkdir()
    progress = []
    outcome = run(
        TransferDirection.FromClient,
        FileInfo("f.bin", "", len(PAYLOAD)),
        lambda helper: helper.fileToNetwork(src),
        lambda helper, info: helper.networkToFile(store / info.file_id, max_size=10 * CHUNK_SIZE),
        extensions=extensions,
        on_progress=lambda done, total: progress.append((done, total)),
    )
    assert outcome.client_value == S_OK(len(PAYLOAD))
    assert outcome.server_value == S_OK(len(PAYLOAD))
    assert outcome.client_result == S_OK(len(PAYLOAD))
    assert (store / "f.bin").read_bytes() == PAYLOAD
    assert os.listdir(store) == ["f.bin"]
    assert progress[-1] == (len(PAYLOAD), len(PAYLOAD)) and len(progress) >= 3


@MODES
def test_receive_file(run, tmp_path, extensions):
    src = tmp_path / "served.bin"
    src.write_bytes(PAYLOAD)
    dest = tmp_path / "down" / "got.bin"
    dest.parent.mkdir()
    outcome = run(
        TransferDirection.ToClient,
        FileInfo("served.bin", ""),
        lambda helper: helper.networkToFile(dest),
        lambda helper, info: helper.fileToNetwork(tmp_path / info.file_id),
        extensions=extensions,
    )
    assert outcome.client_value == S_OK(len(PAYLOAD)) and outcome.server_value == S_OK(len(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD and os.listdir(dest.parent) == ["got.bin"]


@MODES
def test_strings_and_sinks(run, extensions):
    chunks = []
    outcome = run(
        TransferDirection.FromClient,
        FileInfo("f", "", 11),
        lambda helper: helper.DataSourceToNetwork(iter([b"hello ", b"", b"world"])),
        lambda helper, info: helper.networkToDataSink(chunks.append),
        extensions=extensions,
    )
    assert b"".join(bytes(c) for c in chunks) == b"hello world" and outcome.server_value["OK"]
    outcome = run(
        TransferDirection.ToClient,
        FileInfo("f", ""),
        lambda helper: helper.networkToString(),
        lambda helper, info: helper.stringToNetwork(b"x" * (CHUNK_SIZE + 1)),
        extensions=extensions,
    )
    assert outcome.client_value == S_OK(b"x" * (CHUNK_SIZE + 1))


@MODES
def test_corrupted_data_keeps_no_file(run, tmp_path, extensions):
    def tamper(data):  # flip the last byte of the first data chunk on its way to the server
        if len(data) > 1000 and not tamper.done:
            tamper.done = True
            if extensions is None:  # a JSON chunk: change one base64 character
                i = data.index(b'"obj": "') + 10
                return data[:i] + (b"B" if data[i : i + 1] != b"B" else b"C") + data[i + 1 :]
            return data[:-1] + bytes([data[-1] ^ 1])
        return data

    tamper.done = False
    outcome = run(
        TransferDirection.FromClient,
        FileInfo("f", "", 5000),
        lambda helper: helper.stringToNetwork(os.urandom(5000)),
        lambda helper, info: helper.networkToFile(tmp_path / "f"),
        extensions=extensions,
        tamper_client=tamper,
    )
    assert outcome.server_value == S_ERROR(CHECKSUM_ERROR)
    assert outcome.client_result == S_ERROR(CHECKSUM_ERROR)
    if extensions is not None:  # stream: the sender hears about it from the receiver's answer
        assert outcome.client_value == S_ERROR(CHECKSUM_ERROR)
    assert os.listdir(tmp_path) == []


@MODES
def test_size_cap(run, tmp_path, extensions):
    outcome = run(
        TransferDirection.FromClient,
        FileInfo("f", "", 3 * CHUNK_SIZE),
        lambda helper: helper.stringToNetwork(bytes(3 * CHUNK_SIZE)),
        lambda helper, info: helper.networkToFile(tmp_path / "f", max_size=CHUNK_SIZE + 5),
        extensions=extensions,
    )
    assert outcome.server_value == S_ERROR(EXCEEDED_MAX_SIZE)
    assert outcome.client_value == S_ERROR(EXCEEDED_MAX_SIZE)
    assert outcome.client_result == S_ERROR(EXCEEDED_MAX_SIZE)
    assert os.listdir(tmp_path) == []


@MODES
def test_source_failure_aborts(run, tmp_path, extensions):
    def failing():
        yield b"a" * 1000
        raise OSError("disk read error")

    outcome = run(
        TransferDirection.FromClient,
        FileInfo("f", "", 5000),
        lambda helper: helper.DataSourceToNetwork(failing()),
        lambda helper, info: helper.networkToFile(tmp_path / "f"),
        extensions=extensions,
    )
    assert not outcome.client_value["OK"] and "disk read error" in outcome.client_value["Message"]
    assert "disk read error" in outcome.server_value["Message"]
    assert os.listdir(tmp_path) == []


@MODES
def test_client_sink_failure_aborts_the_server(run, tmp_path, extensions):
    class Broken(io.RawIOBase):
        def write(self, data):
            raise OSError("no space left")

    outcome = run(
        TransferDirection.ToClient,
        FileInfo("f", ""),
        lambda helper: helper.networkToFile(Broken()),
        lambda helper, info: helper.stringToNetwork(bytes(3 * CHUNK_SIZE)),
        extensions=extensions,
    )
    assert "no space left" in outcome.client_value["Message"]
    assert not outcome.server_value["OK"]
    assert outcome.client_result == outcome.server_value


def test_missing_server_file_is_an_error_result(run, tmp_path):
    outcome = run(
        TransferDirection.ToClient,
        FileInfo("nope", ""),
        lambda helper: helper.networkToFile(tmp_path / "got"),
        lambda helper, info: helper.fileToNetwork(tmp_path / "nope"),
    )
    assert "Cannot read nope" in outcome.server_value["Message"]
    assert outcome.client_result == outcome.server_value
    assert not outcome.client_value["OK"] and os.listdir(tmp_path) == []


def test_resume_an_interrupted_download(run, tmp_path):
    served = tmp_path / "served.bin"
    served.write_bytes(PAYLOAD)
    dest = tmp_path / "down.bin"
    partial_path(dest).write_bytes(PAYLOAD[: CHUNK_SIZE + 7])  # what the interrupted attempt kept
    progress = []
    outcome = run(
        TransferDirection.ToClient,
        FileInfo("served.bin", "", None, offset=CHUNK_SIZE + 7),
        lambda helper: helper.networkToFile(dest, resume=True),
        lambda helper, info: helper.fileToNetwork(served),
        on_progress=lambda done, total: progress.append(done),
    )
    assert outcome.client_value == S_OK(len(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD and not partial_path(dest).exists()
    assert progress[0] == CHUNK_SIZE + 7


def test_resume_from_a_stale_partial_fails_the_checksum_and_keeps_it(run, tmp_path):
    served = tmp_path / "served.bin"
    served.write_bytes(PAYLOAD)
    dest = tmp_path / "down.bin"
    partial_path(dest).write_bytes(b"z" * 100)
    outcome = run(
        TransferDirection.ToClient,
        FileInfo("served.bin", "", None, offset=100),
        lambda helper: helper.networkToFile(dest, resume=True),
        lambda helper, info: helper.fileToNetwork(served),
    )
    assert outcome.client_value == S_ERROR(CHECKSUM_ERROR) and not dest.exists()


def test_resume_from_a_generator_restarts_at_zero(run, tmp_path):
    dest = tmp_path / "down.bin"
    partial_path(dest).write_bytes(b"stale")
    outcome = run(
        TransferDirection.ToClient,
        FileInfo("x", "", None, offset=5),
        lambda helper: helper.networkToFile(dest, resume=True),
        lambda helper, info: helper.DataSourceToNetwork(iter([b"fresh content"])),
    )
    assert outcome.client_value == S_OK(13) and dest.read_bytes() == b"fresh content"


@MODES
@pytest.mark.parametrize("compression", ["", "bz2"])
def test_bulk_both_ways(run, tmp_path, extensions, compression):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(b"A")
    (src / "b.bin").write_bytes(os.urandom(CHUNK_SIZE + 1))
    up = tmp_path / "up"
    outcome = run(
        TransferDirection.BulkFromClient,
        FileInfo("bulk1.tar" + (".bz2" if compression else ""), "", -1),
        lambda helper: helper.bulkToNetwork([src / "a.txt", src / "b.bin"], compression),
        lambda helper, info: helper.networkToBulk(up),
        extensions=extensions,
    )
    assert outcome.client_value == S_OK(["a.txt", "b.bin"])
    assert sorted(outcome.server_value["Value"]) == ["a.txt", "b.bin"]
    assert (up / "b.bin").read_bytes() == (src / "b.bin").read_bytes()
    down = tmp_path / "down"
    outcome = run(
        TransferDirection.BulkToClient,
        FileInfo("bulk1.tar", ""),
        lambda helper: helper.networkToBulk(down),
        lambda helper, info: helper.bulkToNetwork([up / "a.txt", up / "b.bin"], compression),
        extensions=extensions,
    )
    assert sorted(outcome.client_value["Value"]) == ["a.txt", "b.bin"]
    assert (down / "a.txt").read_bytes() == b"A"


def test_hostile_bulk_upload_is_refused(run, tmp_path):
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("../escape")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    target = tmp_path / "target"
    outcome = run(
        TransferDirection.BulkFromClient,
        FileInfo("evil.tar", "", -1),
        lambda helper: helper.stringToNetwork(buf.getvalue()),
        lambda helper, info: helper.networkToBulk(target),
    )
    assert "'..'" in outcome.server_value["Message"]
    assert not (tmp_path / "escape").exists() and list(target.iterdir()) == []


def test_list_bulk(run, tmp_path):
    outcome = run(
        TransferDirection.ListBulk,
        FileInfo("bulk1.tar.bz2", ""),
        None,
        lambda helper, info: S_OK(["a.txt", "b.txt"]),
    )
    assert outcome.client_result == S_OK(["a.txt", "b.txt"])


def test_early_handler_return_is_incomplete(run, tmp_path):
    outcome = run(
        TransferDirection.FromClient,
        FileInfo("f", "", 5),
        lambda helper: helper.stringToNetwork(b"hello"),
        lambda helper, info: S_OK("did not read"),
        extensions=None,
    )
    assert outcome.client_result == S_ERROR("Incomplete transfer")


@MODES
@pytest.mark.parametrize("payload", [PAYLOAD, b""], ids=["data", "empty"])
def test_an_upload_received_with_resume_starts_at_zero(run, tmp_path, extensions, payload):
    """Found by the second attack run: a handler receiving an upload with ``networkToFile(path, resume=True)``
    appended it to a stale partial file and kept the result. No offset is negotiated for an upload, so the
    receiver writes from the first byte whatever the partial file holds."""
    src = tmp_path / "src.bin"
    src.write_bytes(payload)
    store = tmp_path / "store"
    store.mkdir()
    partial_path(store / "f.bin").write_bytes(b"stale bytes of an earlier attempt")
    outcome = run(
        TransferDirection.FromClient,
        FileInfo("f.bin", "", len(payload)),
        lambda helper: helper.fileToNetwork(src),
        lambda helper, info: helper.networkToFile(store / info.file_id, resume=True),
        extensions=extensions,
    )
    assert outcome.server_value == S_OK(len(payload)) and outcome.client_result == S_OK(len(payload))
    assert (store / "f.bin").read_bytes() == payload and os.listdir(store) == ["f.bin"]


@pytest.mark.parametrize("payload", [PAYLOAD, b""], ids=["data", "empty"])
def test_a_download_with_resume_from_a_dirac_server_starts_at_zero(run, tmp_path, payload):
    """DIRAC's servers grant no offset: a kept partial file must not become the start of the new file."""
    served = tmp_path / "served.bin"
    served.write_bytes(payload)
    dest = tmp_path / "down.bin"
    partial_path(dest).write_bytes(b"stale")
    outcome = run(
        TransferDirection.ToClient,
        FileInfo("served.bin", ""),
        lambda helper: helper.networkToFile(dest, resume=True),
        lambda helper, info: helper.fileToNetwork(served),
    )
    assert outcome.client_value == S_OK(len(payload)) and dest.read_bytes() == payload
