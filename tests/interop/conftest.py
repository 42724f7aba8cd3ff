"""Parsed DIRAC 9.1.22 wire captures (``tests/interop/data``, copied from the project's reference captures).

Each capture file lists exchanges; for each we keep the raw TCP chunks in order (from the hex dumps) and the DISET
frames each way (from the ``[frame]`` lines). Frames and chunks the capture tool truncated are marked incomplete.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"

_CHUNK = re.compile(r"^\s+[\d.]+ ms\s+(C>S|S>C)\s+(\d+) B$")
_HEX = re.compile(r"^\s{4}[0-9a-f]{4}  (.*?)\s*\|")
_FRAME = re.compile(r"^\s+\[frame\] (\d+) B: (b.*)$")


@dataclass
class Exchange:
    name: str
    chunks: list[tuple[str, bytes]] = field(default_factory=list)
    frames: dict[str, list[bytes]] = field(default_factory=lambda: {"C>S": [], "S>C": []})
    complete: bool = True

    def stream(self, direction: str) -> bytes:
        return b"".join(data for d, data in self.chunks if d == direction)


def parse_capture(name: str) -> list[Exchange]:
    exchanges: list[Exchange] = []
    current: Exchange | None = None
    section = ""
    for line in (DATA / name).read_text().splitlines():
        if line.startswith("=== "):
            current = Exchange(line.strip("= "))
            exchanges.append(current)
        elif current is None:
            continue
        elif m := _CHUNK.match(line):
            current.chunks.append((m.group(1), b""))
        elif m := _HEX.match(line):
            direction, data = current.chunks[-1]
            current.chunks[-1] = (direction, data + bytes.fromhex(m.group(1)))
        elif "more bytes)" in line:
            current.complete = False
        elif line.strip().startswith("DISET frames"):
            section = line.split()[-1].rstrip(":")
        elif m := _FRAME.match(line):
            payload = ast.literal_eval(m.group(2))
            if len(payload) != int(m.group(1)):
                current.complete = False
            current.frames[section].append(payload)
    return exchanges


@dataclass
class ErrorCase:
    name: str
    sent: list[bytes]
    received: bytes
    server_closed: bool


def parse_error_replies() -> dict[str, ErrorCase]:
    cases: dict[str, ErrorCase] = {}
    current: ErrorCase | None = None
    for line in (DATA / "error-replies.txt").read_text().splitlines():
        stripped = line.strip()
        if line.startswith("=== "):
            current = ErrorCase(line[4:].strip(), [], b"", False)
            cases[current.name] = current
        elif current is None:
            continue
        elif stripped.startswith("sent: "):
            current.sent.append(ast.literal_eval(stripped[6:]))
        elif stripped.startswith("recv: "):
            current.received = ast.literal_eval(stripped[6:])
        elif stripped.startswith("server closed: "):
            current.server_closed = stripped.endswith("True")
    return cases


@pytest.fixture(scope="session")
def dip_json() -> list[Exchange]:
    return parse_capture("dip-json.txt")


@pytest.fixture(scope="session")
def dip_dencode() -> list[Exchange]:
    return parse_capture("dip-dencode.txt")


@pytest.fixture(scope="session")
def transfer_json() -> list[Exchange]:
    return parse_capture("transfer-json.txt")


@pytest.fixture(scope="session")
def error_cases() -> dict[str, ErrorCase]:
    return parse_error_replies()


@pytest.fixture(scope="session")
def all_exchanges(
    dip_json: list[Exchange], dip_dencode: list[Exchange], transfer_json: list[Exchange]
) -> list[Exchange]:
    return dip_json + dip_dencode + transfer_json
