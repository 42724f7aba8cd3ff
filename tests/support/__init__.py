"""The shared test kit: helpers every test folder may import as ``support.<module>``.

The suite runs in importlib mode, so nothing is put on ``sys.path`` by pytest itself; ``pyproject.toml``'s
``[tool.pytest.ini_options] pythonpath`` adds the repository root (for ``examples`` and ``benchmarks``) and ``tests``
(for this package), once, for every test. No test or conftest touches ``sys.path``.
"""
