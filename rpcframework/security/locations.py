"""Where grid credentials live: explicit argument > environment > default path, in DIRAC's order.

Each finder returns a frozen value saying which file was chosen and why (``source``), so ``check-config`` can print
it, and raises :class:`~rpcframework.errors.CredentialsError` with what was tried and what to do when nothing fits.
A credential the user named (an argument, or an environment variable such as ``X509_USER_PROXY``) that does not exist
is an error naming the path, never skipped: DIRAC's ``Locations.py`` skips it and goes on to the next candidate, so a
typo sends the call out as someone else (the user certificate instead of the proxy) without a word. Only the implicit
defaults (``/tmp/x509up_u<uid>``, ``~/.globus``, ``/etc/grid-security``) fall through. CS settings
(``/DIRAC/Security/CertFile`` …) are resolved by the config layer and passed here as explicit arguments.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from rpcframework.errors import CredentialsError
from rpcframework.security.keyfiles import check_key_file_mode
from rpcframework.security.renewal import renewal_advice
from rpcframework.security.x509 import (
    PeerIdentity,
    identity_from_chain,
    load_pem_chain,
    load_pem_private_key,
)

if TYPE_CHECKING:
    from rpcframework.config.settings import SecuritySettings
    from rpcframework.transports.base import TLSConfig

__all__ = [
    "CADirectory",
    "ClientCredentials",
    "check_credentials",
    "find_ca_dir",
    "find_client_credentials",
    "find_host_certificate",
    "find_proxy",
    "find_user_certificate",
    "service_tls",
]

logger = logging.getLogger(__name__)

DEV_CA_HINT = "run `rpcframework ca init DIR` and use the export lines it prints for development credentials"
_HOST_PREFIXES = ("server", "host", "dirac", "service")
_PROXY_VARIABLES = ("GRID_PROXY_FILE", "X509_USER_PROXY")


@dataclass(frozen=True)
class ClientCredentials:
    """A certificate and its key; for a proxy both name the same file. ``source`` says how it was found."""

    cert_file: Path
    key_file: Path
    source: str
    is_proxy_file: bool = False


@dataclass(frozen=True)
class CADirectory:
    """The trusted-CA directory (hashed ``<hash>.0`` / ``<hash>.r0`` files) and how it was found."""

    path: Path
    source: str


@dataclass
class _Search:
    """The candidates one lookup tried, for the error message when none fits."""

    what: str
    tried: list[str] = field(default_factory=list)

    def fail(self, hint: str) -> CredentialsError:
        tried = "; ".join(self.tried) if self.tried else "nothing"
        return CredentialsError(f"no {self.what} found (tried: {tried}): {hint}")


def _environ(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def _explicit(path: str | os.PathLike[str], what: str) -> Path:
    # An explicit path never falls back: silently using another credential would hide the mistake.
    chosen = Path(path).expanduser()
    if not chosen.is_file():
        raise CredentialsError(f"{what} {chosen} does not exist or is not a file")
    return chosen


def _from_variable(variable: str, value: str, what: str, *, directory: bool = False) -> Path:
    """The path an environment variable names; one that does not exist is an error naming both."""
    path = Path(value).expanduser()
    if path.is_dir() if directory else path.is_file():
        return path
    kind = "a directory" if directory else "a file"
    raise CredentialsError(
        f"${variable} names the {what} {path}, which does not exist or is not {kind}: fix the path, or unset "
        f"{variable} to use the default lookup"
    )


def _dirac_root(env: Mapping[str, str]) -> Path | None:
    root = env.get("DIRAC_ROOT_PATH") or env.get("DIRAC")
    return Path(root) if root else None


def find_proxy(
    explicit: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    uid: int | None = None,
    tmp_dir: str | os.PathLike[str] = "/tmp",
) -> ClientCredentials:
    """The user proxy: ``explicit``, ``$GRID_PROXY_FILE``, ``$X509_USER_PROXY``, then ``/tmp/x509up_u<uid>``."""
    if explicit is not None:
        path = _explicit(explicit, "proxy file")
        return ClientCredentials(path, path, "argument", is_proxy_file=True)
    env = _environ(environ)
    search = _Search("proxy")
    for variable in _PROXY_VARIABLES:
        value = env.get(variable)
        if value:
            path = _from_variable(variable, value, "proxy file")
            return ClientCredentials(path, path, f"${variable}", is_proxy_file=True)
    path = Path(tmp_dir) / f"x509up_u{os.getuid() if uid is None else uid}"
    if path.is_file():
        return ClientCredentials(path, path, "default", is_proxy_file=True)
    search.tried.append(str(path))
    raise search.fail(f"set X509_USER_PROXY to a proxy file, or {DEV_CA_HINT}")


def find_user_certificate(
    cert: str | os.PathLike[str] | None = None,
    key: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    home: str | os.PathLike[str] | None = None,
) -> ClientCredentials:
    """The user certificate: explicit pair, ``$X509_USER_CERT``/``$X509_USER_KEY``, then ``~/.globus``."""
    if cert is not None or key is not None:
        if cert is None or key is None:
            raise CredentialsError("give both the user certificate and its key, or neither")
        return ClientCredentials(_explicit(cert, "certificate"), _explicit(key, "key file"), "argument")
    env = _environ(environ)
    search = _Search("user certificate")
    env_cert, env_key = env.get("X509_USER_CERT"), env.get("X509_USER_KEY")
    if env_cert and env_key:
        cert_path = _from_variable("X509_USER_CERT", env_cert, "certificate")
        key_path = _from_variable("X509_USER_KEY", env_key, "key")
        return ClientCredentials(cert_path, key_path, "$X509_USER_CERT/$X509_USER_KEY")
    if env_cert or env_key:
        search.tried.append("only one of $X509_USER_CERT/$X509_USER_KEY is set")
    globus = (Path(home) if home is not None else Path.home()) / ".globus"
    pair = globus / "usercert.pem", globus / "userkey.pem"
    if pair[0].is_file() and pair[1].is_file():
        return ClientCredentials(pair[0], pair[1], "default")
    search.tried.append(f"{pair[0]} and {pair[1]}")
    raise search.fail(f"set X509_USER_CERT and X509_USER_KEY, or {DEV_CA_HINT}")


def service_tls(cert: ClientCredentials, ca_dir: CADirectory, security: SecuritySettings) -> TLSConfig:
    """A service's TLS settings: its certificate, the CA directory, and ``/DIRAC/Security``'s session options."""
    from rpcframework.transports.base import TLSConfig

    return TLSConfig(
        cert_file=str(cert.cert_file),
        key_file=str(cert.key_file),
        ca_dir=str(ca_dir.path),
        session_lifetime=security.tls_session_lifetime,
        session_cache_size=security.tls_session_cache_size,
    )


def find_host_certificate(
    cert: str | os.PathLike[str] | None = None,
    key: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    grid_security_dirs: list[str | os.PathLike[str]] | None = None,
) -> ClientCredentials:
    """The host certificate: explicit pair (or CS ``CertFile``/``KeyFile``), ``$DIRAC_X509_HOST_CERT``/``_KEY``,
    then ``{server,host,dirac,service}{cert,key}.pem`` in ``$DIRAC/etc/grid-security`` and ``/etc/grid-security``.
    """
    if cert is not None or key is not None:
        if cert is None or key is None:
            raise CredentialsError("give both the host certificate and its key, or neither")
        return ClientCredentials(_explicit(cert, "host certificate"), _explicit(key, "host key"), "argument")
    env = _environ(environ)
    search = _Search("host certificate")
    env_cert, env_key = env.get("DIRAC_X509_HOST_CERT"), env.get("DIRAC_X509_HOST_KEY")
    if env_cert and env_key:
        pair = (
            _from_variable("DIRAC_X509_HOST_CERT", env_cert, "host certificate"),
            _from_variable("DIRAC_X509_HOST_KEY", env_key, "host key"),
        )
        return ClientCredentials(pair[0], pair[1], "$DIRAC_X509_HOST_CERT/$DIRAC_X509_HOST_KEY")
    if grid_security_dirs is None:
        root = _dirac_root(env)
        dirs = [root / "etc" / "grid-security"] if root else []
        dirs.append(Path("/etc/grid-security"))
    else:
        dirs = [Path(d) for d in grid_security_dirs]
    for directory in dirs:
        for prefix in _HOST_PREFIXES:
            pair = directory / f"{prefix}cert.pem", directory / f"{prefix}key.pem"
            if pair[0].is_file() and pair[1].is_file():
                return ClientCredentials(pair[0], pair[1], "default")
        search.tried.append(f"{directory}/{{{','.join(_HOST_PREFIXES)}}}{{cert,key}}.pem")
    raise search.fail(f"set DIRAC_X509_HOST_CERT and DIRAC_X509_HOST_KEY, or {DEV_CA_HINT}")


def find_client_credentials(
    proxy: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    uid: int | None = None,
    tmp_dir: str | os.PathLike[str] = "/tmp",
    home: str | os.PathLike[str] | None = None,
) -> ClientCredentials:
    """What a client presents by default: the proxy, else the user certificate (both searched as above)."""
    try:
        return find_proxy(proxy, environ=environ, uid=uid, tmp_dir=tmp_dir)
    except CredentialsError as proxy_error:
        if proxy is not None or any(_environ(environ).get(name) for name in _PROXY_VARIABLES):
            raise  # a proxy the user named is what they want to present: never another credential instead
        try:
            return find_user_certificate(environ=environ, home=home)
        except CredentialsError as cert_error:
            raise CredentialsError(f"{proxy_error}; and {cert_error}") from cert_error


def find_ca_dir(
    explicit: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None
) -> CADirectory:
    """The trusted-CA directory: ``explicit`` (CS ``CALocation``), ``$X509_CERT_DIR``, ``$DIRAC/etc/grid-security/
    certificates``, then ``/etc/grid-security/certificates``."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_dir():
            raise CredentialsError(f"CA directory {path} does not exist or is not a directory")
        return CADirectory(path, "argument")
    env = _environ(environ)
    search = _Search("CA directory")
    candidates: list[tuple[Path, str]] = []
    if env.get("X509_CERT_DIR"):
        path = _from_variable("X509_CERT_DIR", env["X509_CERT_DIR"], "trusted-CA directory", directory=True)
        return CADirectory(path, "$X509_CERT_DIR")
    root = _dirac_root(env)
    if root is not None:
        candidates.append((root / "etc" / "grid-security" / "certificates", "default"))
    candidates.append((Path("/etc/grid-security/certificates"), "default"))
    for path, source in candidates:
        if path.is_dir():
            return CADirectory(path, source)
        search.tried.append(str(path))
    raise search.fail(f"set X509_CERT_DIR to a hashed CA directory, or {DEV_CA_HINT}")


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CredentialsError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


def check_credentials(
    cert_file: str | os.PathLike[str],
    key_file: str | os.PathLike[str] | None = None,
    *,
    now: datetime.datetime | None = None,
) -> PeerIdentity:
    """Sanity-check our own credential before using it: readable, parseable, within its validity, key matching.

    ``key_file`` defaults to ``cert_file`` when that holds a private key (a proxy file). Returns the identity the
    credential presents. Raises :class:`CredentialsError` naming the file and, for validity, the dates.
    """
    path = Path(cert_file)
    data = _read(path, "certificate file")
    try:
        chain = load_pem_chain(data)
    except CredentialsError as exc:
        raise CredentialsError(f"{path}: {exc}") from exc
    moment = now or datetime.datetime.now(datetime.UTC)
    for cert in chain:
        if cert.not_valid_after_utc <= moment:
            raise CredentialsError(
                f"PEM file {path} has expired: a certificate in it expired at "
                f"{cert.not_valid_after_utc.isoformat()}; {renewal_advice(path, chain, moment)}"
            )
        if cert.not_valid_before_utc > moment:
            raise CredentialsError(
                f"PEM file {path} is not valid yet: a certificate in it starts at "
                f"{cert.not_valid_before_utc.isoformat()}"
            )
    key_path = Path(key_file) if key_file is not None else (path if b"PRIVATE KEY-----" in data else None)
    if key_path is not None:
        check_key_file_mode(key_path)
        key_data = data if key_path == path else _read(key_path, "key file")
        try:
            key = load_pem_private_key(key_data, validate_rsa=False)
        except CredentialsError as exc:
            raise CredentialsError(f"{key_path}: {exc}") from exc
        if _public_der(key.public_key()) != _public_der(chain[0].public_key()):
            raise CredentialsError(f"the key in {key_path} does not belong to the certificate in {path}")
    return identity_from_chain(chain)


def _public_der(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
