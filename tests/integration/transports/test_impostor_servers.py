"""A server that is not the one the client asked for: any holder of a certificate from a trusted CA tries to pose as
``localhost``. Both client back ends, the RPC client, the transfer client and the CLI must refuse it before sending a
byte, and accept a real host certificate (SAN, or CN when it has no SAN and says it serves). Real TLS on 127.0.0.1.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from support.certs import certificate_builder, cn
from support.processes import clean_environment
from support.servers import LoopbackServer

from rpcframework.config import load_dict
from rpcframework.errors import PeerVerificationError
from rpcframework.security.devca import DevCA, proxy_cert_info_der
from rpcframework.security.x509 import PROXY_CERT_INFO_OID
from rpcframework.transports.base import TLSConfig, get_backend

CLIENT_BACKENDS = ["pyopenssl", pytest.param("m2crypto", marks=pytest.mark.m2crypto)]
pytestmark = pytest.mark.timeout(60)


@dataclass(frozen=True)
class Served:
    cert: Path
    key: Path


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _builder(subject: x509.Name, issuer: x509.Name, key: rsa.RSAPrivateKey) -> x509.CertificateBuilder:
    return certificate_builder(subject, issuer, key.public_key())


def _name(*cns: str, ou: str = "Users") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "org"),
            x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "rpcframework"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou),
            *[x509.NameAttribute(NameOID.COMMON_NAME, cn) for cn in cns],
        ]
    )


def _ca_issued(ca: DevCA, directory: Path, subject: x509.Name, *extensions: x509.ExtensionType) -> Served:
    """A certificate signed by the dev CA with exactly the extensions given."""
    ca_key = serialization.load_pem_private_key((ca.directory / "ca" / "cakey.pem").read_bytes(), None)
    assert isinstance(ca_key, rsa.RSAPrivateKey)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    builder = _builder(subject, ca.cert.subject, key).add_extension(
        x509.BasicConstraints(ca=False, path_length=None), critical=True
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cert.pem").write_bytes(_pem(cert))
    (directory / "key.pem").write_bytes(_key_pem(key))
    return Served(directory / "cert.pem", directory / "key.pem")


def _proxy_named(signer: Path, signer_key: Path, last_cn: str, out: Path) -> Served:
    """What the attack run did: a host's holder signs an RFC 3820 proxy whose last CN is the victim's name."""
    signer_cert = x509.load_pem_x509_certificate(signer.read_bytes())
    signing_key = serialization.load_pem_private_key(signer_key.read_bytes(), None)
    assert isinstance(signing_key, rsa.RSAPrivateKey)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([*signer_cert.subject.rdns, x509.RelativeDistinguishedName([cn(last_cn)])])
    cert = (
        _builder(subject, signer_cert.subject, key)
        .add_extension(x509.UnrecognizedExtension(PROXY_CERT_INFO_OID, proxy_cert_info_der()), critical=True)
        .sign(signing_key, hashes.SHA256())
    )
    out.write_bytes(_pem(cert) + _key_pem(key) + signer.read_bytes())
    out.chmod(0o600)
    return Served(out, out)


_SERVER_EKU = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
_CLIENT_EKU = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])


@pytest.fixture(scope="module")
def impostors(creds, tmp_path_factory) -> dict[str, Served]:
    root = tmp_path_factory.mktemp("impostors")
    other = creds.other_name_host  # a real host of the same CA, valid for other.example only
    return {
        "proxy of another host, last CN localhost": _proxy_named(
            other.cert_file, other.key_file, "localhost", root / "host-proxy.pem"
        ),
        "proxy of a user, last CN localhost": _proxy_named(
            creds.user.cert_file, creds.user.key_file, "localhost", root / "user-proxy.pem"
        ),
        "user certificate without extended key usage, CN localhost": _ca_issued(
            creds.ca, root / "user-no-eku", _name("localhost")
        ),
        "user certificate (clientAuth) with SAN localhost": _ca_issued(
            creds.ca,
            root / "user-san",
            _name("localhost-user"),
            _CLIENT_EKU,
            x509.SubjectAlternativeName([x509.DNSName("localhost")]),
        ),
        "host certificate for another name": Served(other.cert_file, other.key_file),
        "certificate with a SAN for another name and CN localhost": _ca_issued(
            creds.ca,
            root / "san-other-cn-localhost",
            _name("localhost", ou="Hosts"),
            _SERVER_EKU,
            x509.SubjectAlternativeName([x509.DNSName("other.example")]),
        ),
    }


@pytest.fixture(scope="module")
def genuine(creds, tmp_path_factory) -> dict[str, Served]:
    root = tmp_path_factory.mktemp("genuine")
    return {
        "host certificate with SAN": Served(creds.host.cert_file, creds.host.key_file),
        "grid host certificate without SAN, CN localhost": _ca_issued(
            creds.ca, root / "cn", _name("localhost", ou="Hosts"), _SERVER_EKU
        ),
        "DIRAC-style CN host/localhost without SAN": _ca_issued(
            creds.ca, root / "cn-host", _name("host/localhost", ou="Hosts"), _SERVER_EKU
        ),
    }


class RecordingServer(LoopbackServer):
    """Accepts one connection at a time, handshakes, and records every byte the client sends after it."""

    def __init__(self, tls: TLSConfig) -> None:
        super().__init__(threaded=False)
        self.received = bytearray()
        self.handshakes = 0
        self._tls = tls
        self.start()

    def handle(self, sock: socket.socket) -> None:
        try:
            stream = get_backend("pyopenssl").wrap_server(sock, self._tls, handshake_timeout=5)
        except Exception:
            return
        self.handshakes += 1
        stream.settimeout(2)
        try:
            for _ in range(1000):
                data = stream.recv(65536)
                if not data:
                    break
                self.received += data
        except Exception:
            pass
        finally:
            stream.close()


@pytest.fixture
def serve(creds):
    started: list[RecordingServer] = []

    def start(served: Served) -> RecordingServer:
        server = RecordingServer(_server_tls(creds, served))
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _server_tls(creds, served: Served) -> TLSConfig:
    return TLSConfig(cert_file=str(served.cert), key_file=str(served.key), ca_dir=str(creds.ca.cert_dir))


IMPOSTORS = [
    "proxy of another host, last CN localhost",
    "proxy of a user, last CN localhost",
    "user certificate without extended key usage, CN localhost",
    "user certificate (clientAuth) with SAN localhost",
    "host certificate for another name",
    "certificate with a SAN for another name and CN localhost",
]
GENUINE = [
    "host certificate with SAN",
    "grid host certificate without SAN, CN localhost",
    "DIRAC-style CN host/localhost without SAN",
]


@pytest.mark.parametrize("client_backend", CLIENT_BACKENDS)
@pytest.mark.parametrize("impostor", IMPOSTORS)
def test_a_client_refuses_a_server_that_is_not_localhost(creds, impostors, serve, client_backend, impostor):
    server = serve(impostors[impostor])
    backend = type(get_backend(client_backend))()
    with pytest.raises(PeerVerificationError):
        stream = backend.connect("localhost", server.port, tls=creds.client_tls(), handshake_timeout=10)
        stream.send_all(b"secret")  # never reached
    server.stop()
    assert bytes(server.received) == b""


@pytest.mark.parametrize("client_backend", CLIENT_BACKENDS)
@pytest.mark.parametrize("kind", GENUINE)
def test_a_client_accepts_a_genuine_host_certificate(creds, genuine, serve, client_backend, kind):
    server = serve(genuine[kind])
    backend = type(get_backend(client_backend))()
    stream = backend.connect("localhost", server.port, tls=creds.client_tls(), handshake_timeout=10)
    try:
        stream.send_all(b"hello")
    finally:
        stream.close()
    server.stop()
    assert bytes(server.received) == b"hello"


def _client_config(creds):
    return load_dict({"DIRAC": {"Security": {"CALocation": str(creds.ca.cert_dir)}}}, "<impostor tests>")


def test_the_rpc_client_refuses_the_impostor_and_sends_no_argument(creds, impostors, serve):
    from rpcframework.client import RPCClient

    server = serve(impostors["proxy of another host, last CN localhost"])
    client = RPCClient(
        f"dips://localhost:{server.port}/Secret/Service",
        proxyLocation=str(creds.user.proxy_file),
        config=_client_config(creds),
        timeout=10,
    )
    result = client.echo("the secret argument")
    server.stop()
    assert not result["OK"] and "proxy" in result["Message"], result
    assert bytes(server.received) == b""  # not even the proposal: nothing about the call reaches the impostor


def test_the_transfer_client_does_not_hand_a_file_to_the_impostor(creds, impostors, serve, tmp_path):
    from rpcframework.client import TransferClient

    server = serve(impostors["proxy of another host, last CN localhost"])
    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"confidential " * 1000)
    client = TransferClient(
        f"dips://localhost:{server.port}/Secret/Files",
        proxyLocation=str(creds.user.proxy_file),
        config=_client_config(creds),
        timeout=10,
    )
    result = client.sendFile(str(payload), "payload.bin")
    server.stop()
    assert not result["OK"], result
    assert bytes(server.received) == b""  # not the proposal, not a byte of the file


def test_the_cli_refuses_the_impostor(creds, impostors, serve):
    server = serve(impostors["proxy of another host, last CN localhost"])
    env = clean_environment()
    env.update(X509_CERT_DIR=str(creds.ca.cert_dir), X509_USER_PROXY=str(creds.user.proxy_file))
    proc = subprocess.run(
        [sys.executable, "-m", "rpcframework.cli.main", "call", f"dips://localhost:{server.port}/X/Y", "echo", "s3"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )
    server.stop()
    assert proc.returncode != 0 and "proxy certificate" in proc.stdout + proc.stderr, (proc.stdout, proc.stderr)
    assert bytes(server.received) == b""


# -- the asyncio client: the same TLS checks (PyOpenSSLBackend.prepare_client/client_identity) over memory BIOs --


def _async_connect(creds, port: int):
    import asyncio

    from rpcframework.transports.aio_tls import open_tls_stream

    async def connect_and_send() -> None:
        stream = await open_tls_stream(get_backend("pyopenssl"), "localhost", port, tls=creds.client_tls())
        try:
            stream.write(b"hello")
            await stream.drain(10)  # in the kernel: the server would see it
        finally:
            stream.close()
        await asyncio.sleep(0)  # one loop turn: the transport's close runs

    asyncio.run(connect_and_send())


@pytest.mark.parametrize("impostor", IMPOSTORS)
def test_the_asyncio_stream_refuses_a_server_that_is_not_localhost(creds, impostors, serve, impostor):
    server = serve(impostors[impostor])
    with pytest.raises(PeerVerificationError):
        _async_connect(creds, server.port)
    server.stop()
    assert bytes(server.received) == b""


@pytest.mark.parametrize("kind", GENUINE)
def test_the_asyncio_stream_accepts_a_genuine_host_certificate(creds, genuine, serve, kind):
    server = serve(genuine[kind])
    _async_connect(creds, server.port)
    server.stop()
    assert bytes(server.received) == b"hello"


def test_the_async_client_refuses_the_impostor_and_sends_no_argument(creds, impostors, serve):
    import asyncio

    from rpcframework.client.aio import AsyncClient

    server = serve(impostors["proxy of another host, last CN localhost"])

    async def call():
        async with AsyncClient(
            f"dips://localhost:{server.port}/Secret/Service",
            proxyLocation=str(creds.user.proxy_file),
            config=_client_config(creds),
            timeout=10,
        ) as client:
            return await client.echo("the secret argument")

    result = asyncio.run(call())
    server.stop()
    assert not result["OK"] and "proxy" in result["Message"], result
    assert bytes(server.received) == b""


@pytest.mark.parametrize("client", ["pyopenssl", "asyncio"])
@pytest.mark.parametrize("impostor", IMPOSTORS)
def test_the_impostor_never_sees_our_certificate(creds, impostors, serve, client, impostor):
    """Found by the attack run on the asyncio client: the name and purpose checks ran after the handshake, so an
    impostor holding any CA-valid certificate received the client's chain (the user's DN) before it was refused.
    The server here requires a client certificate: a completed handshake on its side means the client sent one."""
    server = serve(impostors[impostor])
    with pytest.raises(PeerVerificationError):
        if client == "pyopenssl":
            stream = get_backend("pyopenssl").connect(
                "localhost", server.port, tls=creds.client_tls(), handshake_timeout=10
            )
            stream.close()
        else:
            import asyncio

            from rpcframework.transports.aio_tls import open_tls_stream

            async def connect() -> None:
                stream = await open_tls_stream(
                    type(get_backend("pyopenssl"))(), "localhost", server.port, tls=creds.client_tls()
                )
                stream.close()

            asyncio.run(connect())
    server.stop()
    assert server.handshakes == 0
