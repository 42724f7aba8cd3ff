"""Fixtures for the service-author side: request contexts without any network."""

from __future__ import annotations

import pytest

from rpcframework.server import RequestContext, make_service_info


@pytest.fixture
def context() -> RequestContext:
    return RequestContext(
        service_info=make_service_info("Bench/EchoPlain", url="dip://127.0.0.1:29136/Bench/EchoPlain"),
        peer_address=("127.0.0.1", 40000),
        action=("RPC", "echo"),
        client_version="9.1.22",
        client_setup="None",
        client_vo="unknown",
    )
