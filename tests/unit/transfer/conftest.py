"""In-memory channels and a two-thread runner for FileHelper tests; the DIRAC capture parser."""

from __future__ import annotations

import ast
import queue
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rpcframework.protocol.events import ProposalAccepted, ProposalReceived
from rpcframework.protocol.messages import ActionType, Extensions, Feature, Proposal
from rpcframework.protocol.rpc import ClientConnection, ServerConnection
from rpcframework.protocol.transfer import ClientTransfer, FileInfoReceived, ServerTransfer, TransferAccepted
from rpcframework.transfer.helper import FileHelper

DATA = Path(__file__).parent / "data"
STREAM = Extensions(features=frozenset({Feature.STREAM, Feature.RESUME}))


class MemoryChannel:
    """One end of an in-memory byte pipe; ``tamper(data) -> data`` may alter what this end sends."""

    def __init__(self, inbox, outbox, tamper=None):
        self.inbox, self.outbox, self.tamper = inbox, outbox, tamper

    def send(self, data):
        data = bytes(data)
        if self.tamper is not None:
            data = self.tamper(data)
        self.outbox.put(data)

    def recv(self):
        return self.inbox.get(timeout=20)

    def poll(self):
        return not self.inbox.empty()


def channel_pair(tamper_client=None, tamper_server=None):
    c2s, s2c = queue.Queue(), queue.Queue()
    return MemoryChannel(s2c, c2s, tamper_client), MemoryChannel(c2s, s2c, tamper_server)


def _pump(machine, channel):
    while True:
        event = machine.next_event()
        out = machine.data_to_send()
        if out:
            channel.send(out)
        if event.__class__.__name__ == "Sentinel":
            if event.value == "PAUSED":
                return None
            machine.receive_data(channel.recv())
            continue
        return event


@dataclass
class Outcome:
    client_value: object = None
    client_result: object = None
    server_value: object = None
    errors: list = field(default_factory=list)


def run_transfer(direction, info, client_op, server_op, *, extensions=STREAM, tamper_client=None, on_progress=None):
    """Run one transfer: ``client_op(helper)`` in this thread, ``server_op(helper, info)`` in another."""
    client_conn = ClientConnection(offer=extensions)
    server_conn = ServerConnection(extensions=extensions)
    proposal = Proposal(service="Test/Store", action_type=ActionType.FileTransfer, action_name=direction.value)
    server_conn.receive_data(client_conn.send_proposal(proposal))
    assert isinstance(server_conn.next_event(), ProposalReceived)
    client_conn.receive_data(server_conn.accept())
    assert isinstance(client_conn.next_event(), ProposalAccepted)
    cchan, schan = channel_pair(tamper_client)
    outcome = Outcome()

    def server_side():
        try:
            machine = ServerTransfer(server_conn.hand_over())
            event = _pump(machine, schan)
            assert isinstance(event, FileInfoReceived)
            schan.send(machine.accept())
            helper = FileHelper(machine, schan)
            outcome.server_value = server_op(helper, event.info)
            result = outcome.server_value if isinstance(outcome.server_value, dict) else {"OK": True, "Value": None}
            schan.send(machine.send_result(result))
        except Exception as exc:  # reported to the test thread
            outcome.errors.append(exc)
            raise

    thread = threading.Thread(target=server_side, daemon=True)
    thread.start()
    machine = ClientTransfer(client_conn.hand_over())
    cchan.send(machine.start(info))
    assert isinstance(_pump(machine, cchan), TransferAccepted)
    helper = FileHelper(machine, cchan, on_progress=on_progress, total=info.size)
    if machine.sending or machine.direction.value != "ListBulk":
        outcome.client_value = client_op(helper)
    outcome.client_result = helper.read_result()
    thread.join(20)
    assert not thread.is_alive()
    if outcome.errors:
        raise outcome.errors[0]
    return outcome


# --- DIRAC captures (same format as tests/interop/data) -----------------------------------------------------------

_CHUNK = re.compile(r"^\s+[\d.]+ ms\s+(C>S|S>C)\s+(\d+) B$")
_HEX = re.compile(r"^\s{4}[0-9a-f]{4}  (.*?)\s*\|")
_FRAME = re.compile(r"^\s+\[frame\] (\d+) B: (b.*)$")


@dataclass
class Exchange:
    name: str
    chunks: list = field(default_factory=list)
    frames: dict = field(default_factory=lambda: {"C>S": [], "S>C": []})
    frame_sizes: dict = field(default_factory=lambda: {"C>S": [], "S>C": []})
    complete: bool = True


def parse_capture(name):
    exchanges, current, section = [], None, ""
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
            current.frames[section].append(ast.literal_eval(m.group(2)))
            current.frame_sizes[section].append(int(m.group(1)))
    return exchanges


@pytest.fixture(scope="session")
def captures():
    return {e.name: e for name in ("transfer-json.txt", "dip-json.txt") for e in parse_capture(name)}


@pytest.fixture
def run():
    """``run(direction, info, client_op, server_op, **options)``: see :func:`run_transfer`."""
    return run_transfer
