"""Credential lookup order (argument > environment > default) and check_credentials."""

from __future__ import annotations

import datetime
import shutil
from pathlib import Path

import pytest

from rpcframework.errors import CredentialsError
from rpcframework.security.devca import DevCA
from rpcframework.security.locations import (
    check_credentials,
    find_ca_dir,
    find_client_credentials,
    find_host_certificate,
    find_proxy,
    find_user_certificate,
)

GRID_VARS = (
    "GRID_PROXY_FILE",
    "X509_USER_PROXY",
    "X509_USER_CERT",
    "X509_USER_KEY",
    "X509_CERT_DIR",
    "DIRAC_X509_HOST_CERT",
    "DIRAC_X509_HOST_KEY",
    "DIRAC",
    "DIRAC_ROOT_PATH",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in GRID_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x")
    return path


def test_proxy_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    grid, user, default = touch(tmp_path / "grid.pem"), touch(tmp_path / "user.pem"), touch(tmp_path / "x509up_u42")
    kwargs = {"uid": 42, "tmp_dir": tmp_path}
    assert find_proxy(**kwargs).source == "default"
    assert find_proxy(**kwargs).cert_file == default
    monkeypatch.setenv("X509_USER_PROXY", str(user))
    found = find_proxy(**kwargs)
    assert (found.cert_file, found.key_file, found.source, found.is_proxy_file) == (
        user,
        user,
        "$X509_USER_PROXY",
        True,
    )
    monkeypatch.setenv("GRID_PROXY_FILE", str(grid))
    assert find_proxy(**kwargs).source == "$GRID_PROXY_FILE"
    explicit = touch(tmp_path / "explicit.pem")
    assert find_proxy(explicit, **kwargs).source == "argument"


def test_proxy_env_pointing_nowhere_is_an_error_naming_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # X509_USER_PROXY is a credential the user named: a typo must not send the call out as someone else.
    touch(tmp_path / "x509up_u42")  # a default proxy that must not be used instead
    monkeypatch.setenv("X509_USER_PROXY", str(tmp_path / "typo.pem"))
    with pytest.raises(CredentialsError) as info:
        find_proxy(uid=42, tmp_dir=tmp_path)
    message = str(info.value)
    assert f"$X509_USER_PROXY names the proxy file {tmp_path / 'typo.pem'}, which does not exist" in message
    assert "unset X509_USER_PROXY" in message
    touch(tmp_path / "home/.globus/usercert.pem"), touch(tmp_path / "home/.globus/userkey.pem")
    with pytest.raises(CredentialsError, match=r"typo\.pem"):  # nor the user certificate
        find_client_credentials(uid=42, tmp_dir=tmp_path)
    monkeypatch.delenv("X509_USER_PROXY")
    assert find_proxy(uid=42, tmp_dir=tmp_path).source == "default"  # only the implicit defaults fall through


def test_missing_proxy_advice(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError) as info:
        find_proxy(uid=42, tmp_dir=tmp_path)
    message = str(info.value)
    assert "x509up_u42" in message
    assert "set X509_USER_PROXY" in message and "rpcframework ca init" in message


def test_environment_naming_missing_files_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cert, key = touch(tmp_path / "c.pem"), touch(tmp_path / "k.pem")
    monkeypatch.setenv("X509_USER_CERT", str(cert))
    monkeypatch.setenv("X509_USER_KEY", str(tmp_path / "no-key.pem"))
    with pytest.raises(CredentialsError, match=r"\$X509_USER_KEY names the key .*no-key\.pem"):
        find_user_certificate()
    monkeypatch.setenv("DIRAC_X509_HOST_CERT", str(tmp_path / "no-host.pem"))
    monkeypatch.setenv("DIRAC_X509_HOST_KEY", str(key))
    with pytest.raises(CredentialsError, match=r"\$DIRAC_X509_HOST_CERT names the host certificate"):
        find_host_certificate(grid_security_dirs=[tmp_path])


def test_explicit_missing_never_falls_back(tmp_path: Path) -> None:
    touch(tmp_path / "x509up_u42")
    with pytest.raises(CredentialsError, match="does not exist"):
        find_proxy(tmp_path / "nope.pem", uid=42, tmp_dir=tmp_path)


def test_user_certificate_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    home = tmp_path / "home"
    globus_cert, globus_key = touch(home / ".globus/usercert.pem"), touch(home / ".globus/userkey.pem")
    found = find_user_certificate()
    assert (found.cert_file, found.key_file, found.source) == (globus_cert, globus_key, "default")
    cert, key = touch(tmp_path / "c.pem"), touch(tmp_path / "k.pem")
    monkeypatch.setenv("X509_USER_CERT", str(cert))
    assert find_user_certificate().source == "default"  # only one variable set: ignored
    monkeypatch.setenv("X509_USER_KEY", str(key))
    assert find_user_certificate().cert_file == cert
    assert find_user_certificate(globus_cert, globus_key).source == "argument"
    with pytest.raises(CredentialsError, match="both"):
        find_user_certificate(cert)


def test_user_certificate_missing(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match=r"no user certificate found .*\.globus/usercert\.pem.*X509_USER_CERT"):
        find_user_certificate()


def test_host_certificate_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    grid = tmp_path / "grid-security"
    touch(grid / "hostcert.pem"), touch(grid / "hostkey.pem")
    found = find_host_certificate(grid_security_dirs=[grid])
    assert found.cert_file == grid / "hostcert.pem" and found.source == "default"
    touch(grid / "servercert.pem"), touch(grid / "serverkey.pem")
    assert find_host_certificate(grid_security_dirs=[grid]).cert_file.name == "servercert.pem"
    monkeypatch.setenv("DIRAC_X509_HOST_CERT", str(grid / "hostcert.pem"))
    monkeypatch.setenv("DIRAC_X509_HOST_KEY", str(grid / "hostkey.pem"))
    assert find_host_certificate(grid_security_dirs=[grid]).source == "$DIRAC_X509_HOST_CERT/$DIRAC_X509_HOST_KEY"


def test_host_certificate_under_dirac_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    touch(tmp_path / "etc/grid-security/diraccert.pem"), touch(tmp_path / "etc/grid-security/dirackey.pem")
    monkeypatch.setenv("DIRAC", str(tmp_path))
    assert find_host_certificate().cert_file == tmp_path / "etc/grid-security/diraccert.pem"


def test_host_certificate_missing(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="DIRAC_X509_HOST_CERT"):
        find_host_certificate(grid_security_dirs=[tmp_path])


def test_ca_dir_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    dirac_certs = tmp_path / "dirac/etc/grid-security/certificates"
    dirac_certs.mkdir(parents=True)
    monkeypatch.setenv("DIRAC", str(tmp_path / "dirac"))
    assert find_ca_dir().path == dirac_certs
    env_dir = tmp_path / "env-certs"
    env_dir.mkdir()
    monkeypatch.setenv("X509_CERT_DIR", str(env_dir))
    assert find_ca_dir().path == env_dir and find_ca_dir().source == "$X509_CERT_DIR"
    assert find_ca_dir(dirac_certs).source == "argument"
    with pytest.raises(CredentialsError, match="not a directory"):
        find_ca_dir(tmp_path / "nope")


def test_ca_dir_named_by_environment_must_exist(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match=r"\$X509_CERT_DIR names the trusted-CA directory .*none"):
        find_ca_dir(environ={"X509_CERT_DIR": str(tmp_path / "none")})


def test_client_credentials_fall_back_to_user_cert(tmp_path: Path) -> None:
    touch(tmp_path / "home/.globus/usercert.pem"), touch(tmp_path / "home/.globus/userkey.pem")
    assert find_client_credentials(uid=42, tmp_dir=tmp_path).source == "default"
    assert not find_client_credentials(uid=42, tmp_dir=tmp_path).is_proxy_file
    touch(tmp_path / "x509up_u42")
    assert find_client_credentials(uid=42, tmp_dir=tmp_path).is_proxy_file


def test_client_credentials_none(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match=r"no proxy found.*no user certificate found"):
        find_client_credentials(uid=42, tmp_dir=tmp_path)


# ------------------------------------------------------------------------------------------------ check_credentials


def test_check_credentials_ok(rpcframework_dev_ca: DevCA) -> None:
    user = rpcframework_dev_ca.default_user()
    assert user.proxy_file is not None
    ident = check_credentials(user.proxy_file)
    assert ident.dn == user.dn and ident.is_proxy
    assert check_credentials(user.cert_file, user.key_file).dn == user.dn


def test_check_credentials_expired_and_early(fresh_ca: DevCA) -> None:
    past = datetime.datetime(2021, 6, 1, tzinfo=datetime.UTC)
    old = fresh_ca.issue_user("old", not_after=past)
    with pytest.raises(CredentialsError, match=r"usercert\.pem has expired.*2021-06-01T00:00:00\+00:00"):
        check_credentials(old.cert_file)
    early = fresh_ca.issue_user("early", not_before=datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=3))
    with pytest.raises(CredentialsError, match="not valid yet"):
        check_credentials(early.proxy_file)


def test_check_credentials_bad_input(tmp_path: Path, rpcframework_dev_ca: DevCA, fresh_ca: DevCA) -> None:
    with pytest.raises(CredentialsError, match=r"cannot read certificate file .*missing\.pem"):
        check_credentials(tmp_path / "missing.pem")
    garbage = touch(tmp_path / "garbage.pem")
    with pytest.raises(CredentialsError, match=r"garbage\.pem: no PEM certificate found"):
        check_credentials(garbage)
    user = rpcframework_dev_ca.default_user()
    with pytest.raises(CredentialsError, match="does not belong"):
        check_credentials(user.cert_file, fresh_ca.default_user().key_file)
    with pytest.raises(CredentialsError, match=r"garbage\.pem: no PEM private key"):
        check_credentials(user.cert_file, garbage)
    broken = tmp_path / "proxy.pem"
    shutil.copy(user.proxy_file, broken)
    broken.write_bytes(broken.read_bytes().replace(b"PRIVATE KEY-----\nMII", b"PRIVATE KEY-----\nXXX", 1))
    with pytest.raises(CredentialsError, match="corrupt"):
        check_credentials(broken)
