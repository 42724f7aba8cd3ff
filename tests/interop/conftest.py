"""The DIRAC 9.1.22 wire captures as fixtures (parsed by ``support.captures``)."""

from __future__ import annotations

import pytest
from support.captures import ErrorCase, Exchange, parse_capture, parse_error_replies


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
