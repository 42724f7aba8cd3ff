"""Observability: metrics, traces and structured logs for operators; every part optional.

The framework reports what happens through two small observer interfaces (:mod:`.events`), called from two places
only: the server's dispatch of a call (:class:`~rpcframework.server.service.Service` and the reactor's connection
events) and the client's call through :class:`~rpcframework.client.rpcclient.RPCClient`. Nothing in the protocol
layer knows about them. With no observer configured, each of those places costs one ``is None`` test.

* :mod:`.prometheus` -- Prometheus metrics (``pip install rpcframework[metrics]``), a ``/metrics`` endpoint and
  multiprocess aggregation for ``rpcframework serve --processes N``;
* :mod:`.tracing` -- OpenTelemetry spans (``pip install rpcframework[tracing]``); a no-op without a configured SDK;
* :mod:`.logs` -- one JSON object per log record (``python-json-logger``) for ``serve --log-format json``.

See ``docs/operations.md`` for names, labels, a scrape configuration and alert rules.
"""

from rpcframework.observability.events import (
    CallOutcome,
    ClientObserver,
    FanOutClientObserver,
    FanOutServerObserver,
    HandshakeOutcome,
    ServerObserver,
)

__all__ = [
    "CallOutcome",
    "ClientObserver",
    "FanOutClientObserver",
    "FanOutServerObserver",
    "HandshakeOutcome",
    "ServerObserver",
]
