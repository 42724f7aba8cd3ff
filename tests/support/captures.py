"""The DIRAC 9.1.22 wire captures (``tests/data/dirac-captures``, copied from the project's reference captures).

Each capture file lists exchanges; for each we keep the raw TCP chunks in order (from the hex dumps) and the DISET
frames each way (from the ``[frame]`` lines) with their declared sizes. The capture tool elides the middle of long
frames and chunks: such an exchange is marked incomplete. ``error-replies.txt`` holds malformed and hostile
exchanges as sent/received byte strings instead.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

CAPTURES = Path(__file__).resolve().parents[1] / "data" / "dirac-captures"

_CHUNK = re.compile(r"^\s+[\d.]+ ms\s+(C>S|S>C)\s+(\d+) B$")
_HEX = re.compile(r"^\s{4}[0-9a-f]{4}  (.*?)\s*\|")
_FRAME = re.compile(r"^\s+\[frame\] (\d+) B: (b.*)$")
DIRECTIONS = ("C>S", "S>C")


def _by_direction() -> dict[str, list[bytes]]:
    return {direction: [] for direction in DIRECTIONS}


@dataclass
class Exchange:
    name: str
    chunks: list[tuple[str, bytes]] = field(default_factory=list)  # (direction, bytes) as recv() returned them
    frames: dict[str, list[bytes]] = field(default_factory=_by_direction)
    frame_sizes: dict[str, list[int]] = field(default_factory=lambda: {d: [] for d in DIRECTIONS})
    complete: bool = True  # False when the capture elided bytes of a chunk or a frame

    def stream(self, direction: str) -> bytes:
        return b"".join(data for d, data in self.chunks if d == direction)

    def whole_frames(self) -> list[bytes]:
        """The frames (both directions) the capture kept whole: their length is the declared size."""
        return [
            payload
            for direction in DIRECTIONS
            for payload, size in zip(self.frames[direction], self.frame_sizes[direction], strict=True)
            if len(payload) == size
        ]


def parse_capture(name: str) -> list[Exchange]:
    exchanges: list[Exchange] = []
    current: Exchange | None = None
    section = ""
    for line in (CAPTURES / name).read_text("utf-8").splitlines():
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
            current.frame_sizes[section].append(int(m.group(1)))
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
    for line in (CAPTURES / "error-replies.txt").read_text("utf-8").splitlines():
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
