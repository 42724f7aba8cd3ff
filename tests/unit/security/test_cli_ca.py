"""`rpcframework ca ...` through main([...]): output, exit codes, validity options."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from rpcframework.cli.main import COMMANDS, build_parser, main
from rpcframework.security.devca import DevCA
from rpcframework.security.x509 import identity_from_chain, load_pem_chain_file


@pytest.fixture
def ca_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    directory = tmp_path / "ca"
    assert main(["ca", "init", str(directory), "--key-type", "ec"]) == 0
    capsys.readouterr()
    return directory


def test_commands_are_registered() -> None:
    assert "ca" in COMMANDS
    assert "ca" in build_parser().format_help()


def test_init_prints_exports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "dev ca"
    assert main(["--log-level", "debug", "ca", "init", str(directory), "--key-type", "ec", "--user", "bob"]) == 0
    lines = capsys.readouterr().out.splitlines()
    exports = dict(line.removeprefix("export ").split("=", 1) for line in lines if line.startswith("export "))
    assert exports["X509_CERT_DIR"] == f"'{directory.resolve() / 'certificates'}'"  # quoted: the path has a space
    assert set(exports) == {
        "X509_CERT_DIR",
        "X509_USER_PROXY",
        "X509_USER_CERT",
        "X509_USER_KEY",
        "DIRAC_X509_HOST_CERT",
        "DIRAC_X509_HOST_KEY",
    }
    assert lines[0].startswith("# dev CA") and "CN=bob" in lines[0]
    assert (directory / "proxy.pem").is_file()


def test_init_ca_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "second"
    assert main(["ca", "init", str(directory), "--key-type", "ec", "--ca-name", "Second Dev CA"]) == 0
    assert capsys.readouterr().out.startswith("# dev CA /DC=org/DC=rpcframework/CN=Second Dev CA in ")
    assert DevCA.load(directory).dn == "/DC=org/DC=rpcframework/CN=Second Dev CA"


def test_issue_user_prints_dn_last(ca_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ca", "issue-user", str(ca_dir), "carol"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "/DC=org/DC=rpcframework/OU=Users/CN=carol"
    assert (ca_dir / "users/carol/proxy.pem").is_file()


def test_issue_host_prints_dn_last(ca_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["ca", "issue-host", str(ca_dir), "svc.example", "--san", "DNS:svc.example", "--san", "IP:10.1.2.3"]) == 0
    )
    assert capsys.readouterr().out.splitlines()[-1] == "/DC=org/DC=rpcframework/OU=Hosts/CN=svc.example"
    assert (ca_dir / "hosts/svc.example/hostkey.pem").is_file()


def test_validity_options(ca_dir: Path, tmp_path: Path) -> None:
    assert main(["ca", "issue-user", str(ca_dir), "old", "--not-after", "2020-01-01"]) == 0
    cert = load_pem_chain_file(ca_dir / "users/old/usercert.pem")[0]
    assert cert.not_valid_after_utc == datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    out = tmp_path / "future"
    args = ["ca", "issue-host", str(ca_dir), "h", "--not-before", "2040-02-03T04:05:06", "--days", "7"]
    assert main([*args, "--out-dir", str(out)]) == 0
    cert = load_pem_chain_file(out / "hostcert.pem")[0]
    assert cert.not_valid_before_utc == datetime.datetime(2040, 2, 3, 4, 5, 6, tzinfo=datetime.UTC)
    assert cert.not_valid_after_utc == datetime.datetime(2040, 2, 10, 4, 5, 6, tzinfo=datetime.UTC)


def test_revoke(ca_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ca", "issue-user", str(ca_dir), "eve"]) == 0
    assert main(["ca", "revoke", str(ca_dir), str(ca_dir / "users/eve/usercert.pem")]) == 0
    assert "revoked serial" in capsys.readouterr().out
    assert len(DevCA.load(ca_dir).revoked_serials()) == 1


def test_proxy_command(ca_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "p2.pem"
    assert main(["ca", "proxy", str(ca_dir), "--cert", str(ca_dir / "proxy.pem"), "--out", str(out), "--limited"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "/DC=org/DC=rpcframework/OU=Users/CN=dev-user"
    ident = identity_from_chain(load_pem_chain_file(out))
    assert ident.is_limited_proxy and len(ident.chain) == 3
    assert main(["ca", "proxy", str(ca_dir), "--hours", "1"]) == 0  # re-sign DIR/proxy.pem from the user cert


def test_errors_exit_1_with_message(ca_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ca", "revoke", str(ca_dir), str(tmp_path / "missing.pem")]) == 1
    assert "error: cannot read certificate file" in capsys.readouterr().err
    assert main(["ca", "issue-user", str(tmp_path / "not-a-ca"), "x"]) == 1
    assert "rpcframework ca init" in capsys.readouterr().err
    assert main(["ca", "init", str(ca_dir)]) == 0  # idempotent: an existing CA is reused, never overwritten
    again = capsys.readouterr()
    assert "already holds a dev CA; reusing it" in again.err
    assert f"export X509_CERT_DIR={ca_dir / 'certificates'}" in again.out or "X509_CERT_DIR" in again.out
    assert main(["ca", "proxy", str(ca_dir), "--cert", str(ca_dir / "proxy.pem")]) == 1
    assert "--out is required" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["ca"],
        ["ca", "bogus"],
        ["ca", "issue-user", "d"],
        ["ca", "issue-user", "d", "n", "--not-after", "soon"],
        ["ca", "proxy", "d", "--hours", "-1"],
        ["--log-level", "loud", "ca", "init", "d"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "usage:" in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ca", "--help"]) == 0
    assert "issue-user" in capsys.readouterr().out
