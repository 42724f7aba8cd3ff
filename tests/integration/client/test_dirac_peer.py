"""Our client against a scripted DIRAC 9.1.22 service: one call per connection, DIRAC's bytes, no kwargs."""

from __future__ import annotations

from typing import Any

import pytest
from support.wire import frame_value

from rpcframework.client import Client
from rpcframework.client.base import client_version


@pytest.fixture
def dirac(servers: Any) -> Any:
    return servers("dirac", "plain")


def test_positional_call_uses_diracs_bytes_and_one_connection_per_call(
    dirac: Any, creds: Any, frames: dict[str, str]
) -> None:
    with Client(dirac.url(), useCertificates=True, config=creds.config()) as client:
        assert client.echo("hello")["Value"] == "hello"
        assert client.add(2, 3)["Value"] == 5
    assert dirac.connections == 2  # no reuse with a DIRAC server: its ack carries no extensions
    echo_frames, add_frames = dirac.received
    for seen, name in ((echo_frames, "echo"), (add_frames, "add")):
        proposal, arguments = seen
        captured = frame_value(frames[f"{name}_proposal"].encode())
        sent = frame_value(proposal)
        assert sent[:3] == captured[:3]  # [[service, "None", "unknown"], ["RPC", name], "hosts"]
        assert sent[3] == client_version()  # DIRAC sends its version here ("9.1.22"); we send ours
        assert sent[4] == {"rpcframework": {"version": 1, "features": ["kwargs", "pipeline", "reuse", "trace"]}}
        assert len(sent) == 5
        assert arguments == frames[f"{name}_arguments"].encode()  # byte for byte


def test_user_call_sends_empty_extra_credentials(dirac: Any, creds: Any) -> None:
    with Client(dirac.url(), config=creds.config()) as client:
        assert client.echo("hello")["OK"]
    assert frame_value(dirac.received[0][0])[2] == ""


def test_keyword_arguments_are_refused_before_anything_is_sent(dirac: Any, creds: Any) -> None:
    with Client(dirac.url(), config=creds.config()) as client:
        result = client.echo(data="hello")
    assert not result["OK"]
    assert "does not support keyword arguments" in result["Message"]
    assert "positional" in result["Message"]
    assert dirac.connections == 1  # not retried
    assert len(dirac.received[0]) == 1  # the proposal only: no arguments frame
    assert dirac.executions == 0


def test_dirac_over_tls(servers: Any, creds: Any) -> None:
    peer = servers("dirac", "pyopenssl", creds.server_tls())
    with Client(peer.url(), **creds.client_options()) as client:
        results = [client.add(i, 1)["Value"] for i in range(3)]
    assert results == [1, 2, 3]
    assert peer.connections == 3
    assert peer.handshake_errors == []
