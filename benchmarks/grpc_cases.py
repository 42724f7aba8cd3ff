"""gRPC-Python unary calls over mutual TLS: the comparison point for the rpc cases.

No protoc: a generic handler (``grpc.method_handlers_generic_handler``) whose one method returns its request, and
a client ``channel.unary_unary`` without serializers, so requests and responses are the raw 100 bytes. Both sides
present the dev CA's host certificate (gRPC's TLS stack does not accept RFC 3820 proxies) and verify the peer
against the dev CA; the channel checks the server name ``localhost``.

The server has 15 worker threads (``ThreadPoolExecutor(max_workers=15)``), as many as a ``ServiceReactor``
service by default (``MaxThreads`` = 15). Each client has its own channel (``grpc.use_local_subchannel_pool``: no
sharing of the TCP connection between the 32 clients of the concurrent case).
"""

from __future__ import annotations

import os
from concurrent import futures
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from benchmarks.common import Case, wait_for_stop
from benchmarks.raw_tls_echo import MESSAGE

__all__ = ["GRPC_CASES", "GrpcEcho", "serve_grpc"]

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")  # gRPC's C core logs a GOAWAY line at every server stop

_METHOD = "/bench.Echo/Echo"
_WORKERS = 15
_CALL_TIMEOUT = 30.0


def _echo(request: bytes, context: Any) -> bytes:
    return request


def serve_grpc(ca: Path, control: Connection, workers: int = _WORKERS) -> None:
    """A gRPC server with one identity method, mutual TLS, on 127.0.0.1, with ``workers`` threads."""
    import grpc

    credentials = grpc.ssl_server_credentials(
        [((ca / "hostkey.pem").read_bytes(), (ca / "hostcert.pem").read_bytes())],
        root_certificates=(ca / "ca" / "cacert.pem").read_bytes(),
        require_client_auth=True,
    )
    handler = grpc.method_handlers_generic_handler("bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(_echo)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), handlers=[handler])
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        control.send(f"127.0.0.1:{port}")
        wait_for_stop(control)
    finally:
        server.stop(grace=None).wait(5.0)


class GrpcEcho:
    """``call()``: one unary call with the 100-byte message on this client's own channel, checked."""

    def __init__(self, ca: Path, address: str) -> None:
        import grpc

        credentials = grpc.ssl_channel_credentials(
            root_certificates=(ca / "ca" / "cacert.pem").read_bytes(),
            private_key=(ca / "hostkey.pem").read_bytes(),
            certificate_chain=(ca / "hostcert.pem").read_bytes(),
        )
        options = [("grpc.ssl_target_name_override", "localhost"), ("grpc.use_local_subchannel_pool", 1)]
        self._channel = grpc.secure_channel(address, credentials, options=options)
        try:
            grpc.channel_ready_future(self._channel).result(timeout=_CALL_TIMEOUT)
        except BaseException:
            self._channel.close()
            raise
        self._echo = self._channel.unary_unary(_METHOD)

    def call(self) -> None:
        if self._echo(MESSAGE, timeout=_CALL_TIMEOUT) != MESSAGE:
            raise RuntimeError("echo mismatch")

    def close(self) -> None:
        self._channel.close()


GRPC_CASES = (
    Case(
        "grpc_unary",
        "gRPC-Python unary call, mutual TLS (host certificates), 100-byte echo, one client thread, one channel",
        "raw_ssl_echo",
        serve_grpc,
        GrpcEcho,
    ),
    Case(
        "grpc_unary_32",
        "grpc_unary with 32 client threads, each with its own channel (one client process)",
        "raw_ssl_echo_32",
        serve_grpc,
        GrpcEcho,
        threads=32,
    ),
)
