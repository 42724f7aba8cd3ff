"""Host names with several addresses as several targets, with an injected resolver and clock (no DNS)."""

from __future__ import annotations

from collections.abc import Sequence

from rpcframework.client.base import BaseClient
from rpcframework.client.options import ClientOptions
from rpcframework.client.resolve import AddressBook, split_target
from rpcframework.config import parse_url

from .conftest import FakeClock

URL = "dip://svc.example:9135/S/C"


class FakeDNS:
    def __init__(self, answers: dict[str, Sequence[str]]) -> None:
        self.answers = answers
        self.asked = 0

    def __call__(self, host: str, port: int) -> Sequence[str]:
        self.asked += 1
        if host not in self.answers:
            raise OSError(f"no such name {host}")
        return self.answers[host]


def book(dns: FakeDNS, clock: FakeClock, *urls: str) -> AddressBook:
    return AddressBook({url: parse_url(url) for url in urls}, resolver=dns, interval=30.0, clock=clock)


def test_a_name_with_several_addresses_becomes_one_target_each(clock: FakeClock) -> None:
    dns = FakeDNS({"svc.example": ["10.0.0.1", "10.0.0.2", "10.0.0.1"], "one.example": ["10.0.0.9"]})
    one = "dip://one.example:9135/S/C"
    literal = "dip://10.0.0.7:9135/S/C"
    addresses = book(dns, clock, URL, one, literal)
    assert addresses.targets([URL, one, literal]) == (f"{URL}#10.0.0.1", f"{URL}#10.0.0.2", one, literal)
    assert split_target(f"{URL}#10.0.0.2") == (URL, "10.0.0.2")
    assert split_target(one) == (one, None)


def test_dual_stack_is_one_host_and_unresolvable_names_are_left_to_connect(clock: FakeClock) -> None:
    dns = FakeDNS({"svc.example": ["10.0.0.1", "fd00::1"]})
    addresses = book(dns, clock, URL, "dip://nowhere.example:1/S/C")
    assert addresses.targets([URL]) == (URL,)
    assert not addresses.due()  # nothing expanded: nothing to resolve again


def test_names_are_resolved_again_after_the_interval_and_kept_when_dns_fails(clock: FakeClock) -> None:
    dns = FakeDNS({"svc.example": ["10.0.0.1", "10.0.0.2"]})
    addresses = book(dns, clock, URL)
    assert not addresses.due()
    clock.now += 30.0
    dns.answers["svc.example"] = ["10.0.0.2", "10.0.0.3", "10.0.0.4"]
    assert addresses.due() and addresses.refresh()
    assert addresses.targets([URL]) == tuple(f"{URL}#10.0.0.{n}" for n in (2, 3, 4))
    clock.now += 30.0
    del dns.answers["svc.example"]
    assert not addresses.refresh()  # DNS down: what was known is kept
    assert len(addresses.targets([URL])) == 3


def test_the_client_connects_to_each_address_checking_the_name_and_follows_changes() -> None:
    dns = FakeDNS({"svc.example": ["10.0.0.1", "10.0.0.2"]})
    base = BaseClient(URL, ClientOptions(), resolver=dns, resolve_interval=0)  # due at every look: no clock to wait
    assert base.selector.urls == (f"{URL}#10.0.0.1", f"{URL}#10.0.0.2")
    endpoint = base.endpoints[f"{URL}#10.0.0.2"]
    assert (endpoint.host, endpoint.port, endpoint.server_name, endpoint.path) == (
        "10.0.0.2",
        9135,
        "svc.example",
        "S/C",
    )
    assert base.retry.max_attempts == 6  # DISET's budget over two targets
    base.selector.ban(f"{URL}#10.0.0.1")
    dns.answers["svc.example"] = ["10.0.0.1", "10.0.0.3"]
    base.refresh_addresses()
    assert base.selector.urls == (f"{URL}#10.0.0.1", f"{URL}#10.0.0.3")
    assert f"{URL}#10.0.0.3" in base.endpoints
    assert list(base.selector.banned()) == [f"{URL}#10.0.0.1"]  # a ban outlives re-resolution
