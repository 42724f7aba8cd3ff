"""pytest plugin for service authors (registered through the ``pytest11`` entry point).

Fixtures are added here as the framework grows; see ``docs/testing.md``.
"""

from __future__ import annotations
