"""In-memory channels and a two-thread runner for FileHelper tests; the DIRAC captures by exchange name."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field

import pytest
from support.captures import parse_capture

from rpcframework.protocol.events import ProposalAccepted, ProposalReceived
from rpcframework.protocol.messages import ActionType, Extensions, Feature, Proposal
from rpcframework.protocol.rpc import ClientConnection, ServerConnection
from rpcframework.protocol.transfer import ClientTransfer, FileInfoReceived, ServerTransfer, TransferAccepted
from rpcframework.transfer.helper import FileHelper

STREAM = Extensions(features=frozenset({Feature.STREAM, Feature.RESUME}))


class MemoryChannel:
    """One end of an in-memory byte pipe; ``tamper(data) -> data`` may alter what this end sends."""

    def __init__(self, inbox, outbox, tamper=None):
        self.inbox, self.outbox, self.tamper = inbox, outbox, tamper
        self.left = b""  # what a recv_into could not take of the last piece

    def send(self, data):
        data = bytes(data)
        if self.tamper is not None:
            data = self.tamper(data)
        self.outbox.put(data)

    def recv(self):
        if self.left:
            data, self.left = self.left, b""
            return data
        return self.inbox.get(timeout=20)

    def recv_into(self, view):
        data = self.recv()
        size = min(len(data), len(view))
        view[:size] = data[:size]
        self.left = data[size:]
        return size

    def poll(self):
        return bool(self.left) or not self.inbox.empty()


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


@pytest.fixture(scope="session")
def captures():
    return {e.name: e for name in ("transfer-json.txt", "dip-json.txt") for e in parse_capture(name)}


@pytest.fixture
def run():
    """``run(direction, info, client_op, server_op, **options)``: see :func:`run_transfer`."""
    return run_transfer
