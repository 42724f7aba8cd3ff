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
