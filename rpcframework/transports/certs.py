"""Certificate checks both TLS back ends share: the server-name check and peer identities from DER chains.

Both back ends verify chains with OpenSSL itself (the only verifier that accepts RFC 3820 proxies); what is left to
Python is reading names, which ``cryptography`` does the same way for either library.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

from cryptography import x509
from cryptography.x509.oid import NameOID

from rpcframework.errors import PeerVerificationError, RPCFrameworkError
from rpcframework.security.x509 import PeerIdentity, identity_from_chain

__all__ = ["identity_from_der", "is_ip_address", "match_server_name", "peer_identity"]


def is_ip_address(name: str) -> bool:
    """True for an IPv4/IPv6 literal (no SNI is sent for those, and they match IP SANs only)."""
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def peer_identity(chain: Sequence[x509.Certificate], address: tuple[str, int]) -> PeerIdentity:
    """The identity of a verified peer chain ordered leaf first; one we cannot read raises PeerVerificationError."""
    with _unreadable_chain():
        return identity_from_chain(list(chain), address)


def identity_from_der(chain: Iterable[bytes], address: tuple[str, int]) -> PeerIdentity:
    """:func:`peer_identity` for DER certificates ordered leaf first."""
    with _unreadable_chain():
        return identity_from_chain([x509.load_der_x509_certificate(der) for der in chain], address)


@contextmanager
def _unreadable_chain() -> Iterator[None]:
    try:
        yield
    except RPCFrameworkError:
        raise
    except Exception as exc:
        raise PeerVerificationError(f"cannot read the peer's certificate chain: {exc}") from exc


def _dns_matches(pattern: str, hostname: str) -> bool:
    # RFC 6125: a wildcard only as the whole left-most label, matching exactly one label.
    pattern = pattern.lower().rstrip(".")
    if pattern == hostname:
        return True
    if pattern.startswith("*.") and "." in hostname:
        return hostname.split(".", 1)[1] == pattern[2:] and "*" not in pattern[2:]
    return False


def _common_names(cert: x509.Certificate) -> list[str]:
    names = []
    for attribute in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        value = attribute.value if isinstance(attribute.value, str) else attribute.value.decode("utf-8", "replace")
        # Grid host certificates often read CN=host/<fqdn>; DIRAC's checker accepts that form too.
        names.append(value.removeprefix("host/").lower())
    return names


def match_server_name(cert: x509.Certificate, server_name: str) -> None:
    """Raise :class:`PeerVerificationError` unless ``cert`` was issued for ``server_name``.

    DNS names match dNSName SANs (falling back to the subject CN only when the certificate has no dNSName SAN,
    as grid host certificates sometimes do); IP literals match iPAddress SANs only.
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if is_ip_address(server_name):
        wanted = ipaddress.ip_address(server_name.strip("[]"))
        addresses = san.get_values_for_type(x509.IPAddress) if san is not None else []
        if wanted in addresses:
            return
        offered = ", ".join(str(a) for a in addresses) or "none"
    else:
        hostname = server_name.lower().rstrip(".")
        dns_names = san.get_values_for_type(x509.DNSName) if san is not None else []
        candidates = dns_names or _common_names(cert)
        if any(_dns_matches(name, hostname) for name in candidates):
            return
        offered = ", ".join(candidates) or "none"
    raise PeerVerificationError(
        f"the server certificate is not valid for {server_name!r} (it names: {offered}); connect with a name the "
        "certificate lists, or add that name to the host certificate's subjectAltName"
    )
