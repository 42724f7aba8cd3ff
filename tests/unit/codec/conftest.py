"""Codec test data: DIRAC 9.1.22's codec vectors and the payloads of real captured frames.

``data/`` holds copies of ``reference/dirac-wire`` (observations of DIRAC, not DIRAC code). Tests ask for
``vector``, ``json_frame``, ``dencode_frame`` or ``captured_payload`` and are parametrized over all of them.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).parent / "data"

_FRAME_LINE = re.compile(r"^\s*\[frame\] (\d+) B: (b.*)$", re.MULTILINE)
_STREAM_LINE = re.compile(r"^\s*(?:sent|recv): (b.*)$", re.MULTILINE)


def load_vectors() -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = json.loads((DATA / "codec-vectors.json").read_text("utf-8"))["vectors"]
    return vectors


def frames_in(name: str) -> list[bytes]:
    """The payloads of the ``[frame] N B: b'...'`` lines of a capture; the capture elides the middle of long
    frames (``...``), so only those whose length matches their declared size are complete."""
    payloads = []
    for size, literal in _FRAME_LINE.findall((DATA / name).read_text("utf-8")):
        payload = ast.literal_eval(literal)
        if len(payload) == int(size):
            payloads.append(payload)
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
    text = (DATA / "error-replies.txt").read_text("utf-8")
    return [p for literal in _STREAM_LINE.findall(text) for p in split_stream(ast.literal_eval(literal))]


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
