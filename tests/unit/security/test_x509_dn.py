"""format_dn and openssl_name_hash goldens (each checked once against OpenSSL 3.0's `-nameopt compat` / `-hash`;
tests/integration/test_devca_openssl.py re-checks them against the installed `openssl`)."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID, ObjectIdentifier
from support.certs import rdn

from rpcframework.security.x509 import attribute_short_name, format_dn, openssl_name_hash


def attr(oid: ObjectIdentifier, value: str, asn1: _ASN1Type | None = None) -> x509.NameAttribute[str]:
    if asn1 is None:
        return x509.NameAttribute(oid, value)
    return x509.NameAttribute(oid, value, _type=asn1)


GOLDEN = [
    (
        x509.Name(
            [
                attr(NameOID.DOMAIN_COMPONENT, "ch"),
                attr(NameOID.DOMAIN_COMPONENT, "cern"),
                attr(NameOID.ORGANIZATIONAL_UNIT_NAME, "Users"),
                attr(NameOID.COMMON_NAME, "alice"),
                attr(NameOID.COMMON_NAME, "1234567890"),
            ]
        ),
        "/DC=ch/DC=cern/OU=Users/CN=alice/CN=1234567890",
    ),
    (
        x509.Name.from_rfc4514_string("CN=a/b,O=Example"),
        "/O=Example/CN=a\\/b",
    ),
    (
        x509.Name([attr(NameOID.COMMON_NAME, "x"), attr(NameOID.EMAIL_ADDRESS, "alice@example.org")]),
        "/CN=x/emailAddress=alice@example.org",
    ),
    (
        x509.Name([attr(NameOID.COMMON_NAME, "Zoë  Ünï")]),
        "/CN=Zo\\xC3\\xAB  \\xC3\\x9Cn\\xC3\\xAF",
    ),
    (
        x509.Name(
            [
                x509.RelativeDistinguishedName([attr(NameOID.DOMAIN_COMPONENT, "org")]),
                rdn(attr(NameOID.COMMON_NAME, "a/b+c"), attr(NameOID.USER_ID, "uid1")),
            ]
        ),
        "/DC=org/CN=a\\/b\\+c+UID=uid1",
    ),
    (
        x509.Name(
            [
                attr(NameOID.SERIAL_NUMBER, "12"),
                attr(NameOID.TITLE, "t"),
                attr(NameOID.GIVEN_NAME, "g"),
                attr(NameOID.SURNAME, "s"),
                attr(NameOID.COUNTRY_NAME, "CH"),
                attr(NameOID.LOCALITY_NAME, "Gva"),
                attr(NameOID.STATE_OR_PROVINCE_NAME, "GE"),
                attr(NameOID.ORGANIZATION_NAME, "CERN"),
            ]
        ),
        "/serialNumber=12/title=t/GN=g/SN=s/C=CH/L=Gva/ST=GE/O=CERN",
    ),
    (x509.Name([attr(ObjectIdentifier("1.2.3.4.5"), "odd")]), "/1.2.3.4.5=odd"),
    (x509.Name([attr(NameOID.COMMON_NAME, "tab\there")]), "/CN=tab\\x09here"),
    (x509.Name([attr(NameOID.COMMON_NAME, "Ωmega", _ASN1Type.BMPString)]), "/CN=\\x03\\xA9\\x00m\\x00e\\x00g\\x00a"),
    (x509.Name([]), ""),
]


@pytest.mark.parametrize(("name", "expected"), GOLDEN)
def test_format_dn_golden(name: x509.Name, expected: str) -> None:
    assert format_dn(name) == expected


def test_format_dn_keeps_certificate_order_not_rfc4514_order() -> None:
    name = x509.Name.from_rfc4514_string("CN=alice,OU=Users,DC=cern,DC=ch")
    assert format_dn(name) == "/DC=ch/DC=cern/OU=Users/CN=alice"


def test_multi_valued_rdn_order_is_the_der_set_order() -> None:
    one = x509.Name([rdn(attr(NameOID.USER_ID, "u"), attr(NameOID.COMMON_NAME, "c"))])
    other = x509.Name([rdn(attr(NameOID.COMMON_NAME, "c"), attr(NameOID.USER_ID, "u"))])
    assert format_dn(one) == format_dn(other) == "/CN=c+UID=u"


def test_short_names() -> None:
    assert attribute_short_name(NameOID.EMAIL_ADDRESS) == "emailAddress"
    assert attribute_short_name(NameOID.DOMAIN_COMPONENT) == "DC"
    assert attribute_short_name(ObjectIdentifier("1.2.3")) == "1.2.3"


HASHES = [
    ("CN=rpcframework Dev CA,DC=rpcframework,DC=org", "7da3f701"),
]


@pytest.mark.parametrize(("rfc4514", "expected"), HASHES)
def test_openssl_name_hash_golden(rfc4514: str, expected: str) -> None:
    assert openssl_name_hash(x509.Name.from_rfc4514_string(rfc4514)) == expected


def test_openssl_name_hash_of_mixed_name() -> None:
    name = x509.Name(
        [
            x509.RelativeDistinguishedName([attr(NameOID.DOMAIN_COMPONENT, "org")]),
            rdn(attr(NameOID.COMMON_NAME, "a/b+c"), attr(NameOID.USER_ID, "uid1")),
            rdn(attr(NameOID.EMAIL_ADDRESS, "x@y.org")),
            rdn(attr(NameOID.COMMON_NAME, "Zoë  Ünï")),
            rdn(attr(NameOID.SERIAL_NUMBER, "12")),
            rdn(attr(NameOID.TITLE, "t")),
            rdn(attr(NameOID.GIVEN_NAME, "g")),
            rdn(attr(NameOID.SURNAME, "s")),
        ]
    )
    assert openssl_name_hash(name) == "5beb681a"


def test_openssl_name_hash_ignores_case_and_extra_spaces() -> None:
    plain = x509.Name([attr(NameOID.COMMON_NAME, "foo bar")])
    messy = x509.Name([attr(NameOID.COMMON_NAME, "  FOO \t  Bar ")])
    printable = x509.Name([attr(NameOID.COMMON_NAME, "Foo Bar", _ASN1Type.PrintableString)])
    assert openssl_name_hash(plain) == openssl_name_hash(messy) == openssl_name_hash(printable)
    assert openssl_name_hash(plain) != openssl_name_hash(x509.Name([attr(NameOID.COMMON_NAME, "foobar")]))
