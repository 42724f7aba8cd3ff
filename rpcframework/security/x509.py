"""X.509 inspection the grid way: slash DNs, OpenSSL subject hashes, RFC 3820 and legacy proxies, peer identity.

Only :mod:`cryptography` is used here. It can parse and build proxy certificates but not verify them (verification
happens in the TLS back ends), so everything in this module is about *reading* chains that something else trusted.

DN strings follow OpenSSL's ``X509_NAME_oneline`` (what ``openssl x509 -nameopt compat`` and M2Crypto's
``str(X509_Name)`` print, hence what DIRAC stores in its Registry): RDNs in certificate order, ``/`` before each
RDN, ``+`` between the parts of a multi-valued RDN, OpenSSL short names, ``/`` and ``+`` inside values escaped with a
backslash and bytes outside printable ASCII written as ``\\xHH``. One difference from OpenSSL on purpose: a
backslash inside a value is written ``\\\\`` (OpenSSL leaves it bare), so that no CN spelled ``Zo\\xC3\\xAB`` can
print like ``Zoë`` and be taken for her in the registry.
"""

from __future__ import annotations

import datetime
import hashlib
import itertools
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ObjectIdentifier

from rpcframework.errors import CredentialsError, PeerVerificationError

__all__ = [
    "DIRAC_GROUP_OID",
    "GLOBUS_LIMITED_PROXY_OID",
    "GT3_PROXY_CERT_INFO_OID",
    "PPL_INDEPENDENT_OID",
    "PPL_INHERIT_ALL_OID",
    "PROXY_CERT_INFO_OID",
    "PeerIdentity",
    "ProxyInfo",
    "dirac_group",
    "dirac_group_extension",
    "format_dn",
    "identity_from_chain",
    "load_pem_chain",
    "load_pem_chain_file",
    "load_pem_private_key",
    "openssl_name_hash",
    "proxy_info",
]

logger = logging.getLogger(__name__)

#: RFC 3820 ``id-pe-proxyCertInfo``; always critical.
PROXY_CERT_INFO_OID = ObjectIdentifier("1.3.6.1.5.5.7.1.14")
#: The pre-RFC Globus Toolkit 3 proxyCertInfo extension, still met in old chains.
GT3_PROXY_CERT_INFO_OID = ObjectIdentifier("1.3.6.1.4.1.3536.1.222")
#: ``id-ppl-inheritAll``: the proxy carries all of its issuer's rights.
PPL_INHERIT_ALL_OID = ObjectIdentifier("1.3.6.1.5.5.7.21.1")
#: ``id-ppl-independent``: the proxy carries none of its issuer's rights.
PPL_INDEPENDENT_OID = ObjectIdentifier("1.3.6.1.5.5.7.21.2")
#: Globus "limited proxy" policy language (DIRAC's ``LIMITED_PROXY_OID``).
GLOBUS_LIMITED_PROXY_OID = ObjectIdentifier("1.3.6.1.4.1.3536.1.1.1.9")

#: DIRAC's group extension (``dirac-proxy-init -g GROUP``): non-critical, the group name as a DER IA5String.
DIRAC_GROUP_OID: Final = ObjectIdentifier("1.2.42.42")

_LEGACY_PROXY_CN = "proxy"
_LEGACY_LIMITED_PROXY_CN = "limited proxy"

# OpenSSL's short names (OBJ_nid2sn) for the attributes met in grid DNs; any other OID prints in dotted form, as
# OpenSSL does for OIDs it does not know. Checked against `openssl x509 -nameopt compat` in the tests.
_OPENSSL_SHORT_NAMES: dict[str, str] = {
    "2.5.4.3": "CN",
    "2.5.4.4": "SN",
    "2.5.4.5": "serialNumber",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.9": "street",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.12": "title",
    "2.5.4.13": "description",
    "2.5.4.15": "businessCategory",
    "2.5.4.17": "postalCode",
    "2.5.4.41": "name",
    "2.5.4.42": "GN",
    "2.5.4.43": "initials",
    "2.5.4.44": "generationQualifier",
    "2.5.4.45": "x500UniqueIdentifier",
    "2.5.4.46": "dnQualifier",
    "2.5.4.65": "pseudonym",
    "2.5.4.97": "organizationIdentifier",
    "0.9.2342.19200300.100.1.1": "UID",
    "0.9.2342.19200300.100.1.25": "DC",
    "1.2.840.113549.1.9.1": "emailAddress",
    "1.2.840.113549.1.9.2": "unstructuredName",
    "1.3.6.1.4.1.311.60.2.1.1": "jurisdictionL",
    "1.3.6.1.4.1.311.60.2.1.2": "jurisdictionST",
    "1.3.6.1.4.1.311.60.2.1.3": "jurisdictionC",
}

# String types OpenSSL folds to lower-case UTF8String before hashing a name (ASN1_MASK_CANON in x_name.c).
_CANON_TYPES = frozenset(
    {
        _ASN1Type.UTF8String,
        _ASN1Type.BMPString,
        _ASN1Type.UniversalString,
        _ASN1Type.PrintableString,
        _ASN1Type.T61String,
        _ASN1Type.IA5String,
        _ASN1Type.VisibleString,
    }
)
_ASCII_SPACE = b" \t\n\v\f\r"
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)
_KEY_LABELS = frozenset({b"PRIVATE KEY", b"RSA PRIVATE KEY", b"EC PRIVATE KEY", b"ENCRYPTED PRIVATE KEY"})


# --------------------------------------------------------------------------------------------------------------------
# Minimal DER, just enough for name hashing and proxyCertInfo (cryptography exposes neither).


def der_tlv(tag: int, content: bytes) -> bytes:
    """Encode one DER TLV with a single-byte tag."""
    length = len(content)
    if length < 0x80:
        return bytes([tag, length]) + content
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def der_oid(oid: ObjectIdentifier) -> bytes:
    """Encode an OBJECT IDENTIFIER."""
    arcs = [int(arc) for arc in oid.dotted_string.split(".")]
    body = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        rest = arc >> 7
        while rest:
            chunk.append(0x80 | (rest & 0x7F))
            rest >>= 7
        body.extend(reversed(chunk))
    return der_tlv(0x06, bytes(body))


def _der_read(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """Read one TLV at ``pos``: returns (tag, content, next position). Raises ValueError on truncation."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise ValueError("truncated DER")
    return tag, data[pos : pos + length], pos + length


def _decode_oid(content: bytes) -> ObjectIdentifier:
    arcs: list[int] = []
    value = 0
    for byte in content:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if not arcs:
        raise ValueError("empty OID")
    first = min(arcs[0] // 40, 2)
    return ObjectIdentifier(".".join(str(a) for a in [first, arcs[0] - 40 * first, *arcs[1:]]))


# --------------------------------------------------------------------------------------------------------------------
# DN strings and subject hashes


def _value_bytes(attribute: x509.NameAttribute[str | bytes]) -> bytes:
    """The attribute's value as the bytes stored in the certificate (what OpenSSL prints byte by byte)."""
    value = attribute.value
    if isinstance(value, bytes):
        return value
    asn1_type = attribute._type
    if asn1_type == _ASN1Type.BMPString:
        return value.encode("utf-16-be")
    if asn1_type == _ASN1Type.UniversalString:
        return value.encode("utf-32-be")
    if asn1_type == _ASN1Type.T61String:
        return value.encode("latin-1", errors="replace")
    return value.encode("utf-8")


def _attribute_der(attribute: x509.NameAttribute[str | bytes]) -> bytes:
    return der_tlv(0x30, der_oid(attribute.oid) + der_tlv(attribute._type.value, _value_bytes(attribute)))


def _sorted_attributes(rdn: x509.RelativeDistinguishedName) -> list[x509.NameAttribute[str | bytes]]:
    # A multi-valued RDN is a DER SET OF, stored sorted by encoding; OpenSSL prints that stored order. Sorting here
    # gives the same string for a Name built in memory as for the same Name read back from a certificate.
    attributes: list[x509.NameAttribute[str | bytes]] = list(rdn)
    if len(attributes) > 1:
        attributes.sort(key=_attribute_der)
    return attributes


def _escape_value(raw: bytes) -> str:
    out: list[str] = []
    for byte in raw:
        if byte < 0x20 or byte > 0x7E:
            out.append(f"\\x{byte:02X}")
        elif byte in (0x2F, 0x2B, 0x5C):  # '/' and '+' separate RDNs and RDN parts; '\\' starts an escape
            out.append("\\" + chr(byte))
        else:
            out.append(chr(byte))
    return "".join(out)


def attribute_short_name(oid: ObjectIdentifier) -> str:
    """OpenSSL's short name for a DN attribute type, or the dotted OID when OpenSSL has none."""
    return _OPENSSL_SHORT_NAMES.get(oid.dotted_string, oid.dotted_string)


def format_dn(name: x509.Name) -> str:
    """Render ``name`` in the grid/OpenSSL compat form, e.g. ``/DC=org/DC=example/OU=Users/CN=alice``.

    DNs are Registry keys compared byte for byte, so this must match what DIRAC (OpenSSL's ``X509_NAME_oneline``)
    produces; nothing is normalised.
    """
    parts: list[str] = []
    for rdn in name.rdns:
        rendered = [
            f"{attribute_short_name(attr.oid)}={_escape_value(_value_bytes(attr))}" for attr in _sorted_attributes(rdn)
        ]
        parts.append("/" + "+".join(rendered))
    return "".join(parts)


def _canonical_value(attribute: x509.NameAttribute[str | bytes]) -> bytes:
    """Encode one value the way OpenSSL's ``asn1_string_canon`` does before hashing."""
    if attribute._type not in _CANON_TYPES or isinstance(attribute.value, bytes):
        return der_tlv(attribute._type.value, _value_bytes(attribute))
    text = attribute.value.encode("utf-8").strip(_ASCII_SPACE)
    out = bytearray()
    index = 0
    while index < len(text):
        byte = text[index]
        if byte in _ASCII_SPACE:
            # Runs of white space collapse to one space (the ends were stripped above).
            out.append(0x20)
            while index < len(text) and text[index] in _ASCII_SPACE:
                index += 1
            continue
        out.append(byte + 0x20 if 0x41 <= byte <= 0x5A else byte)  # ASCII lower-casing only
        index += 1
    return der_tlv(_ASN1Type.UTF8String.value, bytes(out))


def openssl_name_hash(name: x509.Name) -> str:
    """OpenSSL's ``X509_NAME_hash`` (``openssl x509 -hash``), as the 8 hex digits used in CA directories.

    It is the first four bytes, little-endian, of the SHA-1 of the name's canonical encoding: each RDN's SET with
    string values folded to lower-case, space-collapsed UTF8String, concatenated without the outer SEQUENCE.
    """
    canonical = bytearray()
    for rdn in name.rdns:
        entries = sorted(der_tlv(0x30, der_oid(attr.oid) + _canonical_value(attr)) for attr in rdn)
        canonical += der_tlv(0x31, b"".join(entries))
    digest = hashlib.sha1(bytes(canonical), usedforsecurity=False).digest()
    return f"{int.from_bytes(digest[:4], 'little'):08x}"


# --------------------------------------------------------------------------------------------------------------------
# PEM


def load_pem_chain(data: bytes) -> list[x509.Certificate]:
    """All certificates in PEM ``data``, in file order; other blocks (private keys, DIRACX tokens) are skipped.

    Raises :class:`CredentialsError` when there is no certificate or one does not parse.
    """
    chain: list[x509.Certificate] = []
    for match in _PEM_BLOCK.finditer(data):
        if match.group(1) != b"CERTIFICATE":
            continue
        try:
            chain.append(x509.load_pem_x509_certificate(match.group(0)))
        except ValueError as exc:
            raise CredentialsError(f"certificate number {len(chain) + 1} in the PEM data is corrupt: {exc}") from exc
    if not chain:
        raise CredentialsError("no PEM certificate found (expected a '-----BEGIN CERTIFICATE-----' block)")
    return chain


def load_pem_chain_file(path: str | object) -> list[x509.Certificate]:
    """:func:`load_pem_chain` on a file; errors name the file."""
    try:
        with open(str(path), "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise CredentialsError(f"cannot read certificate file {path}: {exc.strerror or exc}") from exc
    try:
        return load_pem_chain(data)
    except CredentialsError as exc:
        raise CredentialsError(f"{path}: {exc}") from exc


def load_pem_private_key(data: bytes, password: bytes | None = None, *, validate_rsa: bool = True) -> PrivateKeyTypes:
    """The first private key in PEM ``data`` (a key file or a grid proxy file); other blocks are skipped.

    ``validate_rsa=False`` skips cryptography's RSA consistency check (about 40 ms for a 2048-bit key): fine for our
    own credentials, which are only compared with their certificate and then handed to OpenSSL, never trusted input.
    """
    for match in _PEM_BLOCK.finditer(data):
        if match.group(1) not in _KEY_LABELS:
            continue
        try:
            return serialization.load_pem_private_key(
                match.group(0), password=password, unsafe_skip_rsa_key_validation=not validate_rsa
            )
        except TypeError as exc:
            raise CredentialsError(f"the private key is encrypted and no usable password was given: {exc}") from exc
        except ValueError as exc:
            raise CredentialsError(f"the private key is corrupt or the password is wrong: {exc}") from exc
    raise CredentialsError("no PEM private key found (expected a '-----BEGIN ... PRIVATE KEY-----' block)")


# --------------------------------------------------------------------------------------------------------------------
# Proxies


@dataclass(frozen=True)
class ProxyInfo:
    """What kind of proxy a certificate is. ``policy`` is the RFC 3820 policy language, None for legacy proxies."""

    rfc3820: bool
    limited: bool
    policy: ObjectIdentifier | None


def _proxy_policy(der: bytes) -> ObjectIdentifier:
    """The policy language OID inside a ``ProxyCertInfo`` (RFC 3820 or GT3, both end in a ProxyPolicy SEQUENCE)."""
    tag, body, _ = _der_read(der, 0)
    if tag != 0x30:
        raise ValueError("ProxyCertInfo is not a SEQUENCE")
    pos = 0
    while pos < len(body):
        tag, content, pos = _der_read(body, pos)
        if tag == 0x30:  # ProxyPolicy ::= SEQUENCE { policyLanguage OID, policy OCTET STRING OPTIONAL }
            oid_tag, oid_der, _ = _der_read(content, 0)
            if oid_tag != 0x06:
                raise ValueError("ProxyPolicy does not start with an OID")
            return _decode_oid(oid_der)
    raise ValueError("ProxyCertInfo has no ProxyPolicy")


def _is_legacy_proxy_name(cert: x509.Certificate) -> str | None:
    """The last CN when ``cert`` is a legacy Globus proxy (subject = issuer + CN=proxy|limited proxy), else None."""
    rdns = cert.subject.rdns
    if len(rdns) < 2 or len(rdns[-1]) != 1:
        return None
    last = next(iter(rdns[-1]))
    if last.oid != x509.NameOID.COMMON_NAME or last.value not in (_LEGACY_PROXY_CN, _LEGACY_LIMITED_PROXY_CN):
        return None
    if x509.Name(rdns[:-1]) != cert.issuer:
        return None
    return str(last.value)


def proxy_info(cert: x509.Certificate) -> ProxyInfo | None:
    """Describe ``cert`` as a proxy (RFC 3820, GT3 draft or legacy Globus), or None when it is not one."""
    for ext in cert.extensions:
        if ext.oid in (PROXY_CERT_INFO_OID, GT3_PROXY_CERT_INFO_OID):
            value = ext.value
            raw = value.value if isinstance(value, x509.UnrecognizedExtension) else b""
            try:
                policy: ObjectIdentifier | None = _proxy_policy(raw)
            except ValueError:
                # Malformed policy: still a proxy (TLS verification is what rejects it); treat it as limited,
                # the least privileged reading.
                logger.debug("unparsable proxyCertInfo in %s", format_dn(cert.subject))
                return ProxyInfo(rfc3820=True, limited=True, policy=None)
            # Only inheritAll carries all of the issuer's rights; the Globus limited policy, a restricted policy
            # language or anything unknown is read as limited (the least privilege we can give it).
            return ProxyInfo(rfc3820=True, limited=policy != PPL_INHERIT_ALL_OID, policy=policy)
    legacy_cn = _is_legacy_proxy_name(cert)
    if legacy_cn is not None:
        return ProxyInfo(rfc3820=False, limited=legacy_cn == _LEGACY_LIMITED_PROXY_CN, policy=None)
    return None


# --------------------------------------------------------------------------------------------------------------------
# Identity


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True)
class PeerIdentity:
    """Who is at the other end (or who we are), read from a certificate chain ordered leaf first.

    ``dn`` is the identity DN: the subject of the end-entity certificate that the leading proxies lead to.
    ``subject`` and ``issuer`` belong to the leaf itself. ``is_limited_proxy`` is true when any proxy step is limited,
    because a proxy made from a limited proxy is limited too. ``not_after`` is the earliest expiry in the chain.
    ``dirac_group`` is the group a DIRAC proxy names (extension 1.2.42.42; the proxy nearest the end-entity
    certificate wins, as in DIRAC), None when no proxy of the chain names one.
    """

    dn: str
    subject: str
    issuer: str
    is_proxy: bool
    is_limited_proxy: bool
    chain: tuple[x509.Certificate, ...] = field(repr=False)
    not_after: datetime.datetime
    address: tuple[str, int] | None = None
    dirac_group: str | None = None

    def seconds_left(self, now: datetime.datetime | None = None) -> float:
        """Seconds until the chain's earliest expiry; 0.0 once expired."""
        remaining = (self.not_after - (now or _utcnow())).total_seconds()
        return max(remaining, 0.0)


_GROUP_NAME = re.compile(r"[A-Za-z0-9_.@+-]{1,128}")


def dirac_group_extension(group: str) -> x509.UnrecognizedExtension:
    """DIRAC's group extension naming ``group``, to add (non-critical) to a proxy certificate."""
    if not _GROUP_NAME.fullmatch(group):
        raise ValueError(f"{group!r} is not a DIRAC group name (letters, digits and _ . @ + -, at most 128)")
    return x509.UnrecognizedExtension(DIRAC_GROUP_OID, der_tlv(0x16, group.encode("ascii")))


def dirac_group(cert: x509.Certificate) -> str | None:
    """The DIRAC group ``cert`` names (extension 1.2.42.42), or None; a malformed one raises ValueError."""
    try:
        extension = cert.extensions.get_extension_for_oid(DIRAC_GROUP_OID)
    except x509.ExtensionNotFound:
        return None
    value = extension.value
    raw = value.value if isinstance(value, x509.UnrecognizedExtension) else b""
    tag, content, end = _der_read(raw, 0)
    group = content.decode("ascii", errors="replace")
    if tag != 0x16 or end != len(raw) or not _GROUP_NAME.fullmatch(group):
        raise ValueError(f"the DIRAC group extension of {format_dn(cert.subject)} is malformed")
    return group


def _check_links(certs: Sequence[x509.Certificate]) -> None:
    """Each certificate must be issued by the next one: issuer name and signature (a chain cannot be spliced)."""
    for child, parent in itertools.pairwise(certs):
        try:
            child.verify_directly_issued_by(parent)
        except Exception as exc:  # ValueError (names), InvalidSignature, TypeError (key type)
            raise PeerVerificationError(
                f"broken certificate chain: {format_dn(child.subject)} is not issued by {format_dn(parent.subject)} "
                f"({type(exc).__name__}); send the certificates in order, leaf first, each issued by the next"
            ) from exc


def _check_proxy_name(proxy: x509.Certificate) -> None:
    """RFC 3820 3.4: a proxy's subject is its issuer's subject plus exactly one CN."""
    rdns = proxy.subject.rdns
    last = rdns[-1] if rdns else None
    if (
        last is None
        or len(last) != 1
        or next(iter(last)).oid != x509.NameOID.COMMON_NAME
        or x509.Name(rdns[:-1]) != proxy.issuer
    ):
        raise PeerVerificationError(
            f"proxy certificate {format_dn(proxy.subject)} is not named after its issuer "
            f"{format_dn(proxy.issuer)} plus one CN (RFC 3820): refused"
        )


def _nearest_dirac_group(proxies: Sequence[x509.Certificate]) -> str | None:
    """DIRAC's precedence: searching from the end-entity certificate outwards, the first group found wins."""
    for proxy in reversed(proxies):
        try:
            group = dirac_group(proxy)
        except ValueError as exc:
            raise PeerVerificationError(f"{exc}: refused") from exc
        if group is not None:
            return group
    return None


def identity_from_chain(
    chain: Sequence[x509.Certificate] | Iterable[x509.Certificate], address: tuple[str, int] | None = None
) -> PeerIdentity:
    """Build a :class:`PeerIdentity` from a chain ordered leaf first (CA certificates at the end may be included).

    The chain must hold together on its own: each certificate issued (name and signature) by the next, every proxy
    named after its issuer plus one CN, proxies only before the end-entity certificate. TLS back ends call this on
    the chain OpenSSL verified; the checks here make a spliced chain fail even if a caller passes one by mistake.
    Raises :class:`PeerVerificationError` for an empty chain, one made only of proxies, or one that does not hold.
    """
    certs = tuple(chain)
    if not certs:
        raise PeerVerificationError("empty certificate chain: the peer sent no certificate")
    _check_links(certs)
    proxies: list[x509.Certificate] = []
    limited = False
    for cert in certs:
        info = proxy_info(cert)
        if info is None:
            break
        _check_proxy_name(cert)
        if info.policy == PPL_INDEPENDENT_OID:
            raise PeerVerificationError(
                f"{format_dn(cert.subject)} is an independent proxy (RFC 3820 id-ppl-independent): it carries none of "
                "its issuer's rights, so it identifies no one here: refused"
            )
        proxies.append(cert)
        limited = limited or info.limited
    if len(proxies) == len(certs):
        raise PeerVerificationError(
            f"certificate chain for {format_dn(certs[0].subject)} holds only proxies, no end-entity certificate"
        )
    identity = certs[len(proxies)]
    if any(proxy_info(cert) is not None for cert in certs[len(proxies) + 1 :]):
        raise PeerVerificationError(
            f"certificate chain for {format_dn(identity.subject)} has a proxy after its end-entity certificate: refused"
        )
    leaf = certs[0]
    return PeerIdentity(
        dn=format_dn(identity.subject),
        subject=format_dn(leaf.subject),
        issuer=format_dn(leaf.issuer),
        is_proxy=bool(proxies),
        is_limited_proxy=limited,
        chain=certs,
        not_after=min(cert.not_valid_after_utc for cert in certs),
        address=address,
        dirac_group=_nearest_dirac_group(proxies),
    )
