"""The transfer tests import ``_transfer_kit`` (the suite uses importlib mode)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
