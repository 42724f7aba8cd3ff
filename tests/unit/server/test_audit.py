"""Audit records: one per call, facts as LogRecord attributes, nothing built when the logger is off."""

from __future__ import annotations

import logging

from rpcframework.security.authz import Caller
from rpcframework.server.audit import AUDIT_LOGGER_NAME, audit_call


def _record(caplog, **overrides):
    options = {
        "peer_address": ("127.0.0.1", 5555),
        "peer_dn": "/DC=org/CN=portal",
        "caller": Caller(dn="/DC=org/CN=alice", username="alice", group="users", delegated_from="/DC=org/CN=portal"),
        "service": "Demo/Echo",
        "action": "RPC",
        "method": "echo",
        "result": {"OK": True, "Value": 1},
        "duration": 0.0123,
    }
    options.update(overrides)
    caplog.clear()
    audit_call(**options)
    records = [r for r in caplog.records if r.name == AUDIT_LOGGER_NAME]
    assert len(records) == 1
    return records[0]


def test_delegated_call_record(caplog):
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER_NAME)
    record = _record(caplog)
    assert record.peer_address == "127.0.0.1:5555" and record.peer_dn == "/DC=org/CN=portal"
    assert (record.delegated_dn, record.delegated_group, record.username) == ("/DC=org/CN=alice", "users", "alice")
    assert (record.service, record.method, record.outcome, record.errno) == ("Demo/Echo", "echo", "ok", None)
    assert record.duration_ms == 12.3 and record.utc_time.endswith("+00:00")
    assert "for /DC=org/CN=alice (users)" in record.getMessage()


def test_outcomes(caplog):
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER_NAME)
    error = {"OK": False, "Errno": 1111, "Message": "Unauthorized query"}
    assert _record(caplog, result=error).outcome == "error"
    assert _record(caplog, result=error, caller=None, refused=True).outcome == "refused"
    assert _record(caplog, delivered=False).outcome == "undelivered"
    plain = _record(caplog, caller={"username": "bob", "group": "g", "DN": "/CN=bob"}, peer_address=None)
    assert plain.delegated_dn is None and plain.username == "bob" and plain.peer_address is None


def test_nothing_when_disabled(caplog):
    caplog.set_level(logging.WARNING, logger=AUDIT_LOGGER_NAME)
    audit_call(
        peer_address=None, peer_dn=None, caller=None, service="S/C", action="RPC", method="m", result=None, duration=0
    )
    assert not [r for r in caplog.records if r.name == AUDIT_LOGGER_NAME]
