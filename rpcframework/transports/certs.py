"""Certificate checks both TLS back ends share: the server-name check and peer identities from DER chains.

Both back ends verify chains with OpenSSL itself (the only verifier that accepts RFC 3820 proxies); what is left to
Python is reading names, which ``cryptography`` does the same way for either library.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from rpcframework.errors import PeerVerificationError, RPCFrameworkError
from rpcframework.security.x509 import PeerIdentity, format_dn, identity_from_chain, proxy_info

__all__ = ["check_server_certificate", "is_ip_address", "match_server_name", "peer_identity"]


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


def _extended_key_usage(cert: x509.Certificate) -> x509.ExtendedKeyUsage | None:
    try:
        return cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return None


def _serves(eku: x509.ExtendedKeyUsage) -> bool:
    return ExtendedKeyUsageOID.SERVER_AUTH in eku or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in eku


def check_server_certificate(cert: x509.Certificate, server_name: str) -> None:
    """Raise :class:`PeerVerificationError` unless ``cert`` may identify a server at all.

    A server is identified by its own end-entity certificate: a proxy is never accepted from a server (anyone holding
    a host or user credential can sign a proxy with any last CN), and a certificate whose extended key usage leaves
    out serverAuth (a user certificate) is not a server's.
    """
    if proxy_info(cert) is not None:
        raise PeerVerificationError(
            f"{server_name}: the server presented a proxy certificate ({format_dn(cert.subject)}); a server must "
            "present its own host certificate: refused"
        )
    eku = _extended_key_usage(cert)
    if eku is not None and not _serves(eku):
        raise PeerVerificationError(
            f"{server_name}: the server's certificate {format_dn(cert.subject)} is not for servers (its extended "
            "key usage has no serverAuth): refused; the service must use a host or service certificate"
        )


def match_server_name(cert: x509.Certificate, server_name: str) -> None:
    """Raise :class:`PeerVerificationError` unless ``cert`` is a server certificate issued for ``server_name``.

    DNS names match dNSName SANs; the subject CN counts only when the certificate has no SAN at all and says it is a
    server's (serverAuth extended key usage), as grid host certificates from older CAs do (RFC 6125 6.4.4). IP
    literals match iPAddress SANs only. :func:`check_server_certificate` applies first.
    """
    check_server_certificate(cert, server_name)
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
        eku = _extended_key_usage(cert)
        cn_allowed = san is None and eku is not None and _serves(eku)
        dns_names = san.get_values_for_type(x509.DNSName) if san is not None else []
        candidates = dns_names or (_common_names(cert) if cn_allowed else [])
        if any(_dns_matches(name, hostname) for name in candidates):
            return
        offered = ", ".join(candidates) or "none"
    raise PeerVerificationError(
        f"the server certificate is not valid for {server_name!r} (it names: {offered}); connect with a name the "
        "certificate lists, or add that name to the host certificate's subjectAltName"
    )
