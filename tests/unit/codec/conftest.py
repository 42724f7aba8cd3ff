"""Codec test data: DIRAC 9.1.22's codec vectors and the payloads of real captured frames.

``data/codec-vectors.json`` and the captures in ``tests/data/dirac-captures`` are copies of ``reference/dirac-wire``
(observations of DIRAC, not DIRAC code). Tests ask for ``vector``, ``json_frame``, ``dencode_frame`` or
``captured_payload`` and are parametrized over all of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.captures import parse_capture, parse_error_replies

DATA = Path(__file__).parent / "data"


def load_vectors() -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = json.loads((DATA / "codec-vectors.json").read_text("utf-8"))["vectors"]
    return vectors


def frames_in(name: str) -> list[bytes]:
    """The payloads the capture kept whole (it elides the middle of long frames)."""
    payloads = [payload for exchange in parse_capture(name) for payload in exchange.whole_frames()]
    assert payloads
    return payloads


def split_stream(stream: bytes) -> list[bytes]:
    """The ``<len>:<payload>`` frames of a byte stream (keepalive marks skipped). The capture shortened the
    server paths inside ``CallStack`` after recording, so a last frame shorter than declared is taken whole."""
    payloads = []
    while stream:
        stream = stream.removeprefix(b"dka")
        colon = stream.find(b":", 0, 10)
        if colon <= 0 or not stream[:colon].isdigit():
            break
        end = min(colon + 1 + int(stream[:colon]), len(stream))
        payloads.append(stream[colon + 1 : end])
        stream = stream[end:]
    return payloads


def error_reply_payloads() -> list[bytes]:
    """Frames sent to and received from DIRAC in ``error-replies.txt`` (some sent ones are malformed on purpose)."""
    cases = parse_error_replies().values()
    return [payload for case in cases for data in [*case.sent, case.received] for payload in split_stream(data)]


def unique(payloads: list[bytes]) -> list[bytes]:
    return list(dict.fromkeys(payloads))


JSON_FRAMES = unique(frames_in("dip-json.txt") + frames_in("transfer-json.txt"))
DENCODE_FRAMES = unique(frames_in("dip-dencode.txt"))
ERROR_REPLY_PAYLOADS = unique(error_reply_payloads())


def _short_id(payload: bytes) -> str:
    return payload[:40].decode("latin-1")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "vector" in metafunc.fixturenames:
        vectors = load_vectors()
        metafunc.parametrize("vector", vectors, ids=[v["name"] for v in vectors])
    for fixture, payloads in (
        ("json_frame", JSON_FRAMES),
        ("dencode_frame", DENCODE_FRAMES),
        ("captured_payload", ERROR_REPLY_PAYLOADS),
    ):
        if fixture in metafunc.fixturenames:
            metafunc.parametrize(fixture, payloads, ids=[_short_id(p) for p in payloads])


@pytest.fixture(scope="session")
def all_json_frames() -> list[bytes]:
    return JSON_FRAMES


@pytest.fixture(scope="session")
def all_dencode_frames() -> list[bytes]:
    return DENCODE_FRAMES


@pytest.fixture(scope="session")
def all_error_reply_payloads() -> list[bytes]:
    return ERROR_REPLY_PAYLOADS
