"""``python -m rpcframework``: the ``rpcframework`` command, for a venv whose scripts are not on PATH."""

from __future__ import annotations

import sys

from rpcframework.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
