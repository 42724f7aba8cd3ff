"""Forged client chains against both server back ends, on full and resumed handshakes.

The identity a server sees (DN, proxy and limited status, DIRAC group) must come only from the chain OpenSSL
verified, never from the certificates as the client sent them: a user who inserts another principal's public
certificate between her proxy and her own certificate stays herself. Real TLS on 127.0.0.1, certificates made here.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ObjectIdentifier
from support.certs import certificate_builder, cn

from rpcframework.errors import PeerVerificationError, RPCFrameworkError
from rpcframework.security.devca import proxy_cert_info_der
from rpcframework.security.x509 import (
    PPL_INDEPENDENT_OID,
    PROXY_CERT_INFO_OID,
    PeerIdentity,
    der_oid,
    der_tlv,
    format_dn,
    identity_from_chain,
)
from rpcframework.transports.base import get_backend

TLS_BACKENDS = ["pyopenssl", pytest.param("m2crypto", marks=pytest.mark.m2crypto)]
pytestmark = pytest.mark.timeout(60)


def _blocks(path: Path, label: bytes) -> list[bytes]:
    data = path.read_bytes()
    begin, end = b"-----BEGIN " + label + b"-----", b"-----END " + label + b"-----"
    out = []
    start = data.find(begin)
    while start != -1:
        stop = data.index(end, start) + len(end)
        out.append(data[start:stop] + b"\n")
        start = data.find(begin, stop)
    return out


def _certs(path: Path) -> list[bytes]:
    return _blocks(path, b"CERTIFICATE")


def _key(path: Path) -> bytes:
    data = path.read_bytes()
    for label in (b"PRIVATE KEY", b"RSA PRIVATE KEY", b"EC PRIVATE KEY"):
        found = _blocks(path, label) if label in data else []
        if found:
            return found[0]
    raise AssertionError(f"no key in {path}")


def _write(path: Path, certs: list[bytes], key: bytes) -> Path:
    """A grid proxy file laid out as given: first certificate, its key, then the rest in the order given."""
    path.write_bytes(certs[0] + key + b"".join(certs[1:]))
    path.chmod(0o600)
    return path


def _proxy(
    subject: x509.Name, issuer: x509.Name, signing_key: rsa.RSAPrivateKey, policy_der: bytes | None = None
) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    """A proxy certificate ``subject`` claiming ``issuer``, signed by ``signing_key`` (whoever holds it), with a
    proxyCertInfo of ``policy_der`` (inheritAll by default); returns it and its new key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        certificate_builder(subject, issuer, key.public_key(), valid_for=datetime.timedelta(hours=1))
        .add_extension(
            x509.UnrecognizedExtension(PROXY_CERT_INFO_OID, policy_der or proxy_cert_info_der()), critical=True
        )
        .sign(signing_key, hashes.SHA256())
    )
    return cert, key


def _plus_cn(name: x509.Name, value: str) -> x509.Name:
    return x509.Name([*name.rdns, x509.RelativeDistinguishedName([cn(value)])])


def _user_key(creds) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(creds.user.key_file.read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def _forged_proxy(issuer_cert: x509.Certificate, signing_key: rsa.RSAPrivateKey) -> tuple[bytes, bytes]:
    """A proxy named after ``issuer_cert`` but signed by ``signing_key`` (someone else's key), as PEM."""
    cert, key = _proxy(_plus_cn(issuer_cert.subject, "4242"), issuer_cert.subject, signing_key)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _seen(server) -> object:
    return server.next_result()


def _call(creds, server, proxy_file: Path, roundtrip, *, times: int = 1) -> list[object]:
    """Connect ``times`` times with ``proxy_file`` (a fresh client back end, so later connections resume)."""
    client = type(get_backend("pyopenssl"))()
    outcomes: list[object] = []
    for _ in range(times):
        try:
            stream = client.connect("localhost", server.port, tls=creds.client_tls(proxy_file), handshake_timeout=10)
            try:  # under TLS 1.3 a server's refusal of our certificate arrives with the first read
                assert roundtrip(stream, b"ping") == b"ping"
                outcomes.append(bool(stream.session_reused))  # type: ignore[attr-defined]
            finally:
                stream.close()
        except RPCFrameworkError as exc:
            outcomes.append(("client", exc))
        outcomes.append(_seen(server))
    return outcomes


def _identities(outcomes: list[object]) -> list[PeerIdentity]:
    seen = [o for o in outcomes if isinstance(o, PeerIdentity)]
    assert len(seen) == len([o for o in outcomes if isinstance(o, bool)]), outcomes
    return seen


@pytest.mark.parametrize("server_backend", TLS_BACKENDS)
def test_a_host_certificate_inserted_into_a_users_chain_does_not_make_her_the_host(
    creds, make_server, roundtrip, tmp_path, server_backend
):
    """The reported attack: [her proxy, the portal's public host certificate, her user certificate] + her key."""
    proxy = creds.user.proxy_file
    forged = _write(
        tmp_path / "inserted.pem", [_certs(proxy)[0], *_certs(creds.host.cert_file), *_certs(proxy)[1:]], _key(proxy)
    )
    server = make_server(server_backend, creds.server_tls())
    outcomes = _call(creds, server, forged, roundtrip, times=3)
    seen = _identities(outcomes)
    assert outcomes[4] is True, "the third connection should resume: resumption must be covered too"
    for identity in seen:
        assert identity.dn == creds.user.dn, identity.dn
        assert identity.dn != creds.host.dn and identity.is_proxy


@pytest.mark.parametrize("server_backend", TLS_BACKENDS)
def test_a_limited_proxy_hidden_behind_a_full_one_stays_limited(
    creds, make_server, roundtrip, tmp_path, server_backend
):
    """[full proxy signed by the limited one, user certificate, limited proxy]: the walk must not skip the limited
    step by jumping to the first non-proxy certificate."""
    limited = creds.limited_proxy
    on_top = tmp_path / "full-on-limited.pem"
    creds.ca.issue_proxy(limited, limited, on_top, hours=1)  # full proxy made from the limited one
    top, lim, user = _certs(on_top)
    reordered = _write(tmp_path / "reordered.pem", [top, user, lim], _key(on_top))
    server = make_server(server_backend, creds.server_tls())
    for path in (on_top, reordered):
        for identity in _identities(_call(creds, server, path, roundtrip, times=2)):
            assert identity.dn == creds.user.dn
            assert identity.is_limited_proxy, f"{path.name}: a limited proxy lost its limit"


@pytest.mark.parametrize("server_backend", TLS_BACKENDS)
def test_a_proxy_signed_by_another_key_is_refused(creds, make_server, roundtrip, tmp_path, server_backend):
    """Mallory names a proxy after the user's DN but can only sign it with her own key."""
    mallory = creds.ca.issue_user("mallory-forged-chain")
    user_cert = x509.load_pem_x509_certificate(creds.user.cert_file.read_bytes())
    mallory_key = serialization.load_pem_private_key(mallory.key_file.read_bytes(), None)
    assert isinstance(mallory_key, rsa.RSAPrivateKey)
    cert_pem, key_pem = _forged_proxy(user_cert, mallory_key)
    forged = _write(tmp_path / "other-key.pem", [cert_pem, *_certs(creds.user.cert_file)], key_pem)
    server = make_server(server_backend, creds.server_tls())
    outcomes = _call(creds, server, forged, roundtrip)
    assert not any(isinstance(o, PeerIdentity) for o in outcomes), outcomes
    assert any(isinstance(o, RPCFrameworkError) for o in outcomes), outcomes


@pytest.mark.parametrize("server_backend", TLS_BACKENDS)
@pytest.mark.parametrize("layout", ["proxy-twice", "user-twice", "ca-first"])
def test_duplicated_or_extra_certificates_change_nothing(
    creds, make_server, roundtrip, tmp_path, server_backend, layout
):
    proxy = creds.user.proxy_file
    leaf, user = _certs(proxy)[0], _certs(proxy)[1]
    ca = _certs(creds.ca.ca_cert_file)[0]
    certs = {
        "proxy-twice": [leaf, leaf, user],
        "user-twice": [leaf, user, user],
        "ca-first": [leaf, ca, user],
    }[layout]
    forged = _write(tmp_path / f"{layout}.pem", certs, _key(proxy))
    server = make_server(server_backend, creds.server_tls())
    outcomes = _call(creds, server, forged, roundtrip, times=2)
    for outcome in outcomes:
        if isinstance(outcome, PeerIdentity):
            assert outcome.dn == creds.user.dn and outcome.is_proxy and not outcome.is_limited_proxy
        else:  # refusing is fine too; becoming someone else is not
            assert isinstance(outcome, bool | tuple | RPCFrameworkError), outcome


# ----------------------------------------------------------------------------------------------------------------
# The chain walk on its own: whatever it is given, it never names the wrong principal.


def _load(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def test_the_walk_refuses_a_spliced_chain(creds):
    proxy, user = _load(creds.user.proxy_file)
    host = _load(creds.host.cert_file)[0]
    with pytest.raises(PeerVerificationError, match="not issued by"):
        identity_from_chain([proxy, host, user])


def test_the_walk_refuses_a_reordered_chain(creds):
    top, limited, user = _load(creds.proxy_of_proxy)
    with pytest.raises(PeerVerificationError, match="not issued by"):
        identity_from_chain([top, user, limited])


def test_the_walk_refuses_a_proxy_signed_by_another_key(creds):
    user = _load(creds.user.cert_file)[0]
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = x509.load_pem_x509_certificate(_forged_proxy(user, other_key)[0])
    with pytest.raises(PeerVerificationError, match="not issued by"):
        identity_from_chain([forged, user])


def test_the_walk_refuses_a_proxy_not_named_after_its_issuer(creds):
    """RFC 3820: a proxy's subject is its issuer's plus one CN; here the user signs a 'proxy' named as the host."""
    user = _load(creds.user.cert_file)[0]
    host = _load(creds.host.cert_file)[0]
    renamed, _ = _proxy(_plus_cn(host.subject, "1"), user.subject, _user_key(creds))
    with pytest.raises(PeerVerificationError, match="RFC 3820"):
        identity_from_chain([renamed, user])


def test_the_walk_refuses_a_proxy_after_the_end_entity(creds):
    proxy, user = _load(creds.user.proxy_file)
    ca = _load(creds.ca.ca_cert_file)[0]
    # user -> CA is a real link; put the proxy where a CA should be.
    with pytest.raises(PeerVerificationError):
        identity_from_chain([user, ca, proxy])


def test_the_walk_reads_an_honest_chain(creds):
    top, limited_or_full, user = _load(creds.proxy_of_proxy)
    ca = _load(creds.ca.ca_cert_file)[0]
    identity = identity_from_chain([top, limited_or_full, user, ca])
    assert identity.dn == creds.user.dn and identity.is_proxy and not identity.is_limited_proxy


# ----------------------------------------------------------------------------------------------------------------
# Found by the outside attack run on issues 12-14.


def _proxy_with_policy(creds, policy_der: bytes) -> list[x509.Certificate]:
    user = _load(creds.user.cert_file)[0]
    proxy, _ = _proxy(_plus_cn(user.subject, "99"), user.subject, _user_key(creds), policy_der)
    return [proxy, user]


def test_an_independent_proxy_identifies_no_one(creds):
    """RFC 3820 id-ppl-independent: the proxy carries none of its issuer's rights."""
    chain = _proxy_with_policy(creds, der_tlv(0x30, der_tlv(0x30, der_oid(PPL_INDEPENDENT_OID))))
    with pytest.raises(PeerVerificationError, match="independent proxy"):
        identity_from_chain(chain)


def test_a_restricted_or_unknown_policy_is_read_as_limited(creds):
    restricted = ObjectIdentifier("1.3.6.1.4.1.3536.1.1.1.8")  # some policy language we do not interpret
    chain = _proxy_with_policy(creds, der_tlv(0x30, der_tlv(0x30, der_oid(restricted))))
    identity = identity_from_chain(chain)
    assert identity.dn == creds.user.dn and identity.is_limited_proxy


def test_a_backslash_in_a_name_cannot_pass_for_an_escaped_byte():
    """A CN spelled with the four characters \\xC3 must not print like the byte 0xC3 (Zoë's registry DN)."""
    real = x509.Name([cn("Zoë")])
    spoof = x509.Name([cn("Zo\\xC3\\xAB")])
    assert format_dn(real) == "/CN=Zo\\xC3\\xAB"
    assert format_dn(spoof) == "/CN=Zo\\\\xC3\\\\xAB"
    assert format_dn(real) != format_dn(spoof)
