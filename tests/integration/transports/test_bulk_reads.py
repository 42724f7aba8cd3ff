"""Bulk reads on the pyOpenSSL stream: when a read returns a whole TLS record, the records already waiting are taken
in the same ``recv`` (OpenSSL hands out one record per read), and whatever ended the burst (the peer's close) is
reported by the next ``recv``, after the data. Real sockets on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from rpcframework.transports.base import Stream, get_backend

RECORD = 16_384


@pytest.fixture
def serve_once(creds) -> Iterator[Callable[[Callable[[Stream], None]], tuple[int, threading.Event]]]:
    """Start a one-connection pyOpenSSL server running ``behaviour(stream)``; returns its port and an event set once
    the server has closed the connection (on loopback, everything it sent is then in the client's socket)."""
    threads: list[threading.Thread] = []
    listeners: list[socket.socket] = []

    def start(behaviour: Callable[[Stream], None]) -> tuple[int, threading.Event]:
        closed = threading.Event()
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(10)
        listeners.append(listener)

        def run() -> None:
            sock, _ = listener.accept()
            stream = get_backend("pyopenssl").wrap_server(sock, creds.server_tls(), handshake_timeout=10)
            stream.settimeout(10)
            try:
                behaviour(stream)
            finally:
                stream.close()
                closed.set()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)
        return int(listener.getsockname()[1]), closed

    yield start
    for thread in threads:
        thread.join(10)
    for listener in listeners:
        listener.close()


def _client(creds, port: int) -> Stream:
    stream = get_backend("pyopenssl").connect("localhost", port, tls=creds.client_tls(), handshake_timeout=10)
    stream.settimeout(10)
    return stream


def test_waiting_records_come_in_one_read(creds, serve_once):
    payload = bytes(range(256)) * 1024  # 256 KiB: 16 records
    sent = threading.Event()
    done = threading.Event()

    def send(stream: Stream) -> None:
        stream.send_all(payload)
        sent.set()
        done.wait(10)  # keep the connection open until the client has read

    port, _ = serve_once(send)
    stream = _client(creds, port)
    try:
        assert sent.wait(10)  # the records are waiting in the client's socket
        first = stream.recv(1 << 20)
        assert len(first) > RECORD  # more than one record in one recv
        received = bytearray(first)
        for _ in range(1000):
            if len(received) >= len(payload):
                break
            received += stream.recv(1 << 20)
        assert bytes(received) == payload
    finally:
        done.set()
        stream.close()


def test_the_end_of_the_stream_comes_after_the_data(creds, serve_once):
    payload = b"x" * (5 * RECORD + 123)
    port, closed = serve_once(lambda s: s.send_all(payload))  # then the server closes
    stream = _client(creds, port)
    try:
        assert closed.wait(10)  # data and close_notify both waiting: the first read ends at the close
        received = bytearray()
        for _ in range(1000):
            data = stream.recv(1 << 20)
            if not data:
                break
            received += data
        assert bytes(received) == payload
        assert stream.recv(1 << 20) == b""  # and stays ended
    finally:
        stream.close()


def test_a_read_smaller_than_a_record_is_returned_at_once(creds, serve_once):
    """Small messages (RPC frames) never wait for more: the reader gets what arrived."""
    go_on = threading.Event()

    def two_messages(stream: Stream) -> None:
        stream.send_all(b"first")
        go_on.wait(10)
        stream.send_all(b"second")

    port, _ = serve_once(two_messages)
    stream = _client(creds, port)
    try:
        assert stream.recv(1 << 20) == b"first"
        go_on.set()
        assert stream.recv(1 << 20) == b"second"
    finally:
        go_on.set()
        stream.close()


def test_a_small_buffer_gets_exactly_what_it_asks_for(creds, serve_once):
    payload = b"y" * (4 * RECORD)
    port, closed = serve_once(lambda s: s.send_all(payload))
    stream = _client(creds, port)
    try:
        assert closed.wait(10)  # all of it is waiting before the first read
        pieces = [stream.recv(RECORD + 1) for _ in range(3)]
        assert all(0 < len(piece) <= RECORD + 1 for piece in pieces)
        received = bytearray(b"".join(pieces))
        for _ in range(100):
            data = stream.recv(RECORD + 1)
            if not data:
                break
            received += data
        assert bytes(received) == payload
    finally:
        stream.close()


def test_bytes_left_inside_openssl_are_read_after_a_send_without_waiting(creds, serve_once):
    """A read smaller than the record leaves decrypted bytes inside OpenSSL, where poll cannot see them: the read
    after our next send must return them at once instead of waiting on the socket."""
    release = threading.Event()

    def one_record(stream: Stream) -> None:
        stream.send_all(b"abcdef")
        release.wait(10)  # send nothing more until the client is done

    stream = _client(creds, serve_once(one_record)[0])
    try:
        stream.settimeout(2)
        assert stream.recv(2) == b"ab"
        stream.send_all(b"x")  # the server never answers it
        assert stream.recv(100) == b"cdef"
    finally:
        release.set()
        stream.close()


def test_a_read_of_nothing_is_a_programming_error(creds, serve_once):
    stream = _client(creds, serve_once(lambda s: s.send_all(b"z"))[0])
    try:
        with pytest.raises(ValueError, match="positive"):
            stream.recv(0)
        assert stream.recv(10) == b"z"  # the stream is unharmed
    finally:
        stream.close()
