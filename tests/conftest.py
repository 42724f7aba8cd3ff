"""Suite-wide pytest settings. Area fixtures live in each test folder's own conftest.py."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Bounded, reproducible property tests: CI derandomizes, local runs explore.
settings.register_profile(
    "ci", max_examples=200, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
