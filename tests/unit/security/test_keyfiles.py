"""Private key files others can write are refused by every back end and by the client's pre-flight check."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from rpcframework.errors import CredentialsError
from rpcframework.security.devca import DevCA
from rpcframework.security.keyfiles import check_key_file_mode
from rpcframework.security.locations import check_credentials
from rpcframework.transports import TLSConfig, get_backend

BACKENDS = ["pyopenssl", pytest.param("m2crypto", marks=pytest.mark.m2crypto)]


@pytest.mark.parametrize("mode", [0o666, 0o620, 0o602, 0o660], ids=oct)
def test_writable_by_others_is_refused(rpcframework_dev_ca: DevCA, tmp_path: Path, mode: int) -> None:
    key = tmp_path / "userkey.pem"
    shutil.copyfile(rpcframework_dev_ca.directory / "userkey.pem", key)
    key.chmod(mode)
    with pytest.raises(CredentialsError, match=rf"writable by .* \(mode {mode:04o}\).*chmod 600"):
        check_key_file_mode(key)
    with pytest.raises(CredentialsError, match="writable by"):
        check_credentials(rpcframework_dev_ca.directory / "usercert.pem", key)


def test_private_and_readable_keys_are_used(
    rpcframework_dev_ca: DevCA, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = tmp_path / "userkey.pem"
    shutil.copyfile(rpcframework_dev_ca.directory / "userkey.pem", key)
    for mode in (0o400, 0o600, 0o640):
        key.chmod(mode)
        with caplog.at_level(logging.WARNING, logger="rpcframework.security.keyfiles"):
            check_key_file_mode(key)
        assert not caplog.records
    key.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="rpcframework.security.keyfiles"):
        check_credentials(rpcframework_dev_ca.directory / "usercert.pem", key)
    assert "readable by every user (mode 0644)" in caplog.text


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_refuses_a_world_writable_proxy(rpcframework_dev_ca: DevCA, tmp_path: Path, backend: str) -> None:
    proxy = tmp_path / "proxy.pem"
    shutil.copyfile(rpcframework_dev_ca.directory / "proxy.pem", proxy)
    proxy.chmod(0o666)
    host_key = tmp_path / "hostkey.pem"
    shutil.copyfile(rpcframework_dev_ca.directory / "hostkey.pem", host_key)
    host_key.chmod(0o660)
    server_tls = TLSConfig(
        cert_file=str(rpcframework_dev_ca.directory / "hostcert.pem"),
        key_file=str(host_key),
        ca_dir=str(rpcframework_dev_ca.cert_dir),
    )
    with pytest.raises(CredentialsError, match="writable by its group"):
        get_backend(backend).prepare_server(server_tls)
    client_tls = TLSConfig(cert_file=str(proxy), ca_dir=str(rpcframework_dev_ca.cert_dir))
    with pytest.raises(CredentialsError, match="writable by every user"):
        get_backend(backend).connect("127.0.0.1", 9, tls=client_tls, connect_timeout=0.01)
