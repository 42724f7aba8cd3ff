"""The docs tests import ``_doc_blocks`` from this folder (the suite runs in importlib mode)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
