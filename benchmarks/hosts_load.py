"""A busy client for the multi-host test bed: N threads share one ``RPCClient`` and call for a while.

Run inside the client host (``TestBed.run_client("-m", "benchmarks.hosts_load", ...)``). Every call is recorded as
``[start, seconds, host, reason]`` (``start`` on the machine's monotonic clock, which every namespace shares, so the
caller can line calls up with the faults it made; ``host`` the host that answered, ``""`` when none did; ``reason``
``null`` for a call that worked). The JSON goes to ``--out`` (or stdout)::

    {"threads": 32, "urls": [...], "started": 123.4, "ended": 143.4, "calls": [[123.40, 0.0012, "h1", null], ...]}
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from typing import Any

from rpcframework.client import RPCClient
from rpcframework.client.policy import Timeout
from rpcframework.errors import RPCFrameworkError

#: A thread stops after this many calls even if the duration has not run out (bounds the memory of the record).
MAX_CALLS_PER_THREAD = 200_000
_REASON_CHARS = 600


def _reason(text: str) -> str:
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 3] + "..."


def _worker(client: RPCClient, call: tuple[str, tuple[Any, ...]], end: float, timeout: float, out: list[Any]) -> None:
    method, args = call
    for _ in range(MAX_CALLS_PER_THREAD):
        start = time.monotonic()
        if start >= end:
            return
        try:
            result = client.call(method, args, {}, timeout=timeout)
        except RPCFrameworkError as exc:
            out.append([start, time.monotonic() - start, "", _reason(f"{type(exc).__name__}: {exc}")])
            continue
        took = time.monotonic() - start
        if result["OK"]:
            out.append([start, took, str(result["Value"]), None])
        else:
            out.append([start, took, "", _reason(f"S_ERROR: {result['Message']}")])


def run(options: argparse.Namespace) -> dict[str, Any]:
    timeout = Timeout(
        total=options.timeout,
        connect=options.connect_timeout,
        handshake=options.connect_timeout,
        keepalive=options.keepalive,
    )
    client = RPCClient(options.urls, timeout=timeout, resolve_interval=options.resolve_interval)
    args: tuple[Any, ...] = (options.sleep,) if options.method == "sleep" else ()
    started = time.monotonic()
    if options.out:
        print(f"started {started}", flush=True)  # the fault maker lines its faults up with this
    end = started + options.duration
    records: list[list[Any]] = [[] for _ in range(options.threads)]
    threads = [
        threading.Thread(
            target=_worker, args=(client, (options.method, args), end, options.timeout, records[i]), daemon=True
        )
        for i in range(options.threads)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(options.duration + options.timeout + 30.0)
    ended = time.monotonic()
    bans = client.base.selector.banned()
    client.close()
    calls = sorted((call for per_thread in records for call in per_thread), key=lambda call: call[0])
    return {
        "threads": options.threads,
        "urls": options.urls,
        "started": started,
        "ended": ended,
        "calls": calls,
        "bans": bans,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--urls", required=True, help="the service's URLs, comma-separated")
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of calls")
    parser.add_argument("--method", choices=["where", "sleep"], default="where")
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds each call holds a worker (method sleep)")
    parser.add_argument("--timeout", type=float, default=30.0, help="deadline of each call")
    parser.add_argument("--connect-timeout", type=float, default=2.0, help="TCP connect and TLS handshake limit")
    parser.add_argument("--keepalive", type=float, default=30.0, help="seconds a silent connection is tolerated")
    parser.add_argument("--out", help="write the JSON here instead of stdout")
    parser.add_argument("--resolve-interval", type=float, default=30.0, help="seconds between DNS resolutions")
    parser.add_argument("--log-level", default="WARNING", help="of rpcframework's messages on stderr")
    options = parser.parse_args(argv)
    logging.basicConfig(level=options.log_level.upper(), format="%(asctime)s %(name)s: %(message)s")
    result = run(options)
    text = json.dumps(result)
    if options.out:
        with open(options.out, "w") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
