"""What to run when one of our own credentials has expired: advice that fixes it when followed.

An expired proxy is the everyday case (a dev proxy lives 12 hours, a grid proxy a day). The advice names the exact
command: ``rpcframework ca proxy DIR`` for a proxy made by the dev CA in ``DIR`` (``ca init`` on an existing
directory only reuses what is there, so it would not help), ``dirac-proxy-init`` for a grid proxy. An expired user
or host certificate is re-issued by the dev CA (``ca issue-user``/``ca issue-host`` into the same directory), or
renewed by the real CA that issued it.
"""

from __future__ import annotations

import datetime
import shlex
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from rpcframework.security.x509 import proxy_info

__all__ = ["renewal_advice"]

GRID_PROXY_ADVICE = "make a new proxy with dirac-proxy-init (or voms-proxy-init)"


def renewal_advice(path: Path, chain: Sequence[x509.Certificate], moment: datetime.datetime) -> str:
    """What to run so that the credential in ``path`` (its certificates ``chain``, leaf first) is valid again."""
    expired = [cert for cert in chain if cert.not_valid_after_utc <= moment]
    dev_ca = _dev_ca_root(path)
    if expired and all(proxy_info(cert) is not None for cert in expired):
        return _proxy_advice(path, dev_ca)
    signer = next((cert for cert in expired if proxy_info(cert) is None), None)
    if signer is None or dev_ca is None:
        return "renew the certificate with the CA that issued it, then " + GRID_PROXY_ADVICE
    return _dev_certificate_advice(path, signer, dev_ca)


def _dev_ca_root(path: Path) -> Path | None:
    """The dev CA directory holding ``path``: itself (``DIR/proxy.pem``) or two levels up (``DIR/users/NAME/...``)."""
    for candidate in list(path.parents)[:3]:
        if (candidate / "ca" / "cakey.pem").is_file():
            return candidate
    return None


def _proxy_advice(path: Path, dev_ca: Path | None) -> str:
    if dev_ca is None:
        return GRID_PROXY_ADVICE
    quoted = shlex.quote(str(dev_ca))
    if path == dev_ca / "proxy.pem":
        return f"make a new one with `rpcframework ca proxy {quoted}`"
    cert, key = path.parent / "usercert.pem", path.parent / "userkey.pem"
    if not (cert.is_file() and key.is_file()):
        return f"make a new one with `rpcframework ca proxy {quoted} --cert USERCERT --key USERKEY --out {path}`"
    return (
        f"make a new one with `rpcframework ca proxy {quoted} --cert {shlex.quote(str(cert))} "
        f"--key {shlex.quote(str(key))} --out {shlex.quote(str(path))}`"
    )


def _dev_certificate_advice(path: Path, cert: x509.Certificate, dev_ca: Path) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    units = {str(unit.value) for unit in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)}
    if not names:
        return f"issue a new one with the dev CA in {dev_ca}"
    name = shlex.quote(str(names[-1].value))
    action = "issue-host" if "Hosts" in units else "issue-user"
    command = f"rpcframework ca {action} {shlex.quote(str(dev_ca))} {name} --out-dir {shlex.quote(str(path.parent))}"
    proxy = " (it writes a new proxy too)" if action == "issue-user" else ""
    return f"issue a new one with `{command}`{proxy}"
