"""The shared test kit: every helper the test folders share, defined once, imported as ``support.<module>``.

The suite runs in importlib mode, so pytest puts nothing on ``sys.path`` by itself; ``pyproject.toml``'s
``[tool.pytest.ini_options] pythonpath`` adds the repository root (for ``examples`` and ``benchmarks``) and ``tests``
(for this package), once, for every test. No test or conftest touches ``sys.path``.

* ``waiting``: :func:`~support.waiting.wait_for` and :func:`~support.waiting.poll` (a condition within a bounded
  deadline) and :class:`~support.waiting.Gate` (hold handler calls, know when they started). Tests never sleep to
  order threads or to wait for something.
* ``wire``: ``frame``, ``read_until_closed``, ``wait_delivered`` (what a server sent is in its peer's socket) and
  ``wait_readable``.
* ``credentials``: TLS settings and the ``DIRAC/Security`` section from the plugin's ``rpcframework_dev_ca``.
* ``servers``: the loopback accept loop of the scripted servers; ``hostile_server``: the scripted hostile peer.
* ``captures``: the DIRAC 9.1.22 wire captures (``tests/data/dirac-captures``), parsed.
* ``certs``, ``processes``, ``threads``: hand-made certificates, examples and the CLI as subprocesses with a clean
  environment, a function run on many threads at once.
* ``server_kit``, ``security_kit``, ``e2e_kit``, ``transfer_kit``, ``doc_blocks``: what one area's tests share
  (handlers, registries, raw clients).
"""
