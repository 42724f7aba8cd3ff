"""Bytes in flight without sockets: reservations per address and per service, and one connection's holding."""

from __future__ import annotations

from rpcframework.server.limits import FREE_BYTES_PER_CONNECTION, BytesInFlight, Holding


def test_reservations_stay_within_both_limits_and_are_given_back():
    budget = BytesInFlight()
    limits = (100, 150)
    assert budget.reserve("192.0.2.1", "S/A", (60, 60), limits)
    assert not budget.reserve("192.0.2.1", "S/A", (50, 50), limits)  # the address would hold 110
    assert budget.reserve("192.0.2.2", "S/A", (80, 80), limits)
    assert not budget.reserve("192.0.2.3", "S/A", (20, 20), limits)  # the service would hold 160
    assert budget.reserve("192.0.2.3", None, (20, 0), limits)  # no service yet: the address only
    assert budget.held() == ({"192.0.2.1": 60, "192.0.2.2": 80, "192.0.2.3": 20}, {"S/A": 140})
    for address, service, amounts in (("192.0.2.1", "S/A", (60, 60)), ("192.0.2.2", "S/A", (80, 80))):
        budget.release(address, service, amounts)
    budget.release("192.0.2.3", None, (20, 0))
    assert budget.held() == ({}, {})


def test_a_holding_grows_with_the_frame_and_is_released_once():
    budget = BytesInFlight()
    holding = Holding(budget, "192.0.2.1", (1000, 800))
    assert holding.covers(FREE_BYTES_PER_CONNECTION) and not holding.covers(FREE_BYTES_PER_CONNECTION + 1)
    assert holding.cover(300, None) is None  # a proposal not yet authorized: the address only
    assert holding.cover(700, "S/A") is None  # its caller has no registered identity: the service too
    assert budget.held() == ({"192.0.2.1": 700}, {"S/A": 700})
    problem = holding.cover(900, "S/A")
    assert problem is not None and "service S/A: limit 800 bytes" in problem and "registered certificate" in problem
    assert "address 192.0.2.1: limit 1000" in (holding.cover(1200, None) or "")
    assert budget.held() == ({"192.0.2.1": 700}, {"S/A": 700})  # a refused reservation takes nothing
    holding.release()
    holding.release()
    assert budget.held() == ({}, {}) and holding.covers(10)


def test_transfer_slots_are_capped_in_total_and_per_identity():
    from rpcframework.server.limits import TransferSlots

    slots = TransferSlots()
    assert slots.take("/CN=a", 3, 2) is None and slots.take("/CN=a", 3, 2) is None
    assert "MaxTransfersPerIdentity" in (slots.take("/CN=a", 3, 2) or "")
    assert slots.take("/CN=b", 3, 2) is None
    assert "MaxTransfers)" in (slots.take("/CN=c", 3, 2) or "")
    assert slots.running() == {"/CN=a": 2, "/CN=b": 1} and slots.total == 3
    slots.give_back("/CN=a")
    assert slots.take("/CN=c", 3, 2) is None
    for who in ("/CN=a", "/CN=b", "/CN=c"):
        slots.give_back(who)
    assert slots.running() == {} and slots.total == 0


def test_transfer_limits_always_leave_a_worker_for_calls():
    from rpcframework.config.settings import ServiceSettings

    settings = ServiceSettings("S/C", "/Systems/S/Services/C")
    assert settings.transfer_limits(15) == (8, 4)  # DIRAC's MaxThreads: half the workers, half of that per caller
    assert settings.transfer_limits(2) == (1, 1) and settings.transfer_limits(1) == (1, 1)
    configured = ServiceSettings("S/C", "/Systems/S/Services/C", max_transfers=50, max_transfers_per_identity=60)
    assert configured.transfer_limits(15) == (14, 14)  # never every worker, never more per caller than in all
