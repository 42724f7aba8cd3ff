"""``idle_1000``: the server's memory with 1,000 idle TLS connections open, and new calls answered meanwhile.

The server is a ``ServiceReactor`` (``dips://``, built-in ``echo``) that reports its pid with its URL. The client
process:

1. makes one call with a throw-away ``Client`` (the server has then done one handshake and one call), closes it,
   and reads the server's ``VmRSS`` from ``/proc/<pid>/status`` (**before**);
2. opens 1,000 connections: one ``RPCClient`` makes an ``echo`` call with ``reuse`` negotiated, so the server
   keeps the connection idle, waiting for the next proposal; the client takes it out of its pool
   (``client.pool.acquire``) and holds it, so its next call opens a new connection. Bounded: each call has a
   10 s deadline, the whole opening 120 s; they are all closed in a ``finally``. (1,000 ``RPCClient`` objects
   would take ~40 ms each to build: each loads and validates the proxy's RSA key, see the notes);
3. reads ``VmRSS`` again (**after**) and then a fresh ``Client`` measures calls (its first call opens connection
   1,001, in the warm-up) as ``rpc_reused`` does, while the 1,000 stay open.

All connections come from 127.0.0.1, so the server's configuration raises
``/DIRAC/Security/Server/MaxConnectionsPerAddress`` (default 256) to 2,048. Both processes raise their soft
``RLIMIT_NOFILE`` (within the hard limit) if it is below 4,096.
"""

from __future__ import annotations

import logging
import os
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, ClassVar

from benchmarks.common import Case, raise_nofile_limit, wait_for_stop
from benchmarks.measure import Plan
from benchmarks.raw_tls_echo import MESSAGE

__all__ = ["IDLE_CASES", "server_rss_kib"]

IDLE_CONNECTIONS = 1000
_OPEN_LIMIT = 120.0
_CALL_TIMEOUT = 10.0
_NOFILE = 4096
#: Every connection comes from 127.0.0.1: the server's per-address limit (``MaxConnectionsPerAddress``, 256 by
#: default) is raised in its configuration for this case; the total limit (``MaxConnections``, 4096) is kept.
_PER_ADDRESS = 2048
_TEXT = MESSAGE.decode()


def server_rss_kib(pid: int) -> int:
    """``VmRSS`` of process ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def serve_idle(ca: Path, control: Connection) -> None:
    from rpcframework.config import ConfigTree
    from rpcframework.server import RequestHandler, Service, ServiceReactor
    from rpcframework.transports import TLSConfig

    class IdleHandler(RequestHandler):
        auth_echo: ClassVar[list[str]] = ["all"]

    logging.basicConfig(level=logging.WARNING)
    raise_nofile_limit(_NOFILE)
    tls = TLSConfig(
        cert_file=str(ca / "hostcert.pem"), key_file=str(ca / "hostkey.pem"), ca_dir=str(ca / "certificates")
    )
    config = ConfigTree.from_dict({"DIRAC": {"Security": {"Server": {"MaxConnectionsPerAddress": _PER_ADDRESS}}}})
    service = Service("Bench/Idle", IdleHandler, port=0, protocol="dips", config=config)
    with ServiceReactor([service], host="127.0.0.1", tls=tls, backlog=1024) as reactor:
        control.send(f"{reactor.url('Bench/Idle')} pid={os.getpid()}")
        wait_for_stop(control)


def _config(ca: Path) -> Any:
    from rpcframework.config import load_dict

    return load_dict({"DIRAC": {"Security": {"CALocation": str(ca / "certificates")}}}, "<bench>")


def _check(result: dict[str, Any]) -> None:
    if not result["OK"] or result["Value"] != _TEXT:
        raise RuntimeError(f"echo failed: {result.get('Message')}")


def _open_idle(ca: Path, url: str, count: int) -> list[Any]:
    """``count`` idle reused connections: one ``RPCClient`` makes a call, then the connection is taken out of its
    pool (``client.pool.acquire``) and held, so the next call opens a new one. Each holds one idle connection on
    the server. Closes what it opened if it fails."""
    from rpcframework.client import RPCClient
    from rpcframework.client.pool import PoolSettings

    pool = PoolSettings(keepalive_lapse=0, idle_timeout=0)
    client = RPCClient(url, proxyLocation=str(ca / "proxy.pem"), config=_config(ca), pool=pool)
    held: list[Any] = [client]
    end = time.monotonic() + _OPEN_LIMIT
    try:
        for _ in range(count):
            if time.monotonic() > end:
                raise TimeoutError(f"opened only {len(held) - 1} connections in {_OPEN_LIMIT:g} s")
            try:
                _check(client.call("echo", (_TEXT,), {}, timeout=_CALL_TIMEOUT))
            except Exception as exc:
                raise RuntimeError(f"connection {len(held)} failed: {type(exc).__name__}: {exc}") from exc
            connection = client.pool.acquire(url)
            if connection is None:
                raise RuntimeError("the connection was not kept for reuse (reuse not negotiated?)")
            held.append(connection)
    except BaseException:
        _close_all(held)
        raise
    return held


def _close_all(things: list[Any]) -> None:
    for thing in things:
        try:
            thing.close()
        except Exception as exc:  # keep closing the others
            logging.getLogger(__name__).debug("close failed: %s", exc)


class IdleConnections:
    """Opens the idle connections, then ``call()`` is one ``echo`` from another ``Client``; :meth:`extras` gives
    the server's memory."""

    def __init__(self, ca: Path, address: str) -> None:
        from rpcframework.client import Client

        url, pid = address.split(" pid=")
        self._pid = int(pid)
        raise_nofile_limit(_NOFILE)
        with Client(url, proxyLocation=str(ca / "proxy.pem"), config=_config(ca)) as warm:
            _check(warm.echo(_TEXT))
        self._rss_before = server_rss_kib(self._pid)
        start = time.monotonic()
        self._idle = _open_idle(ca, url, IDLE_CONNECTIONS)
        try:
            self._open_seconds = time.monotonic() - start
            time.sleep(0.5)  # let the server finish any hand-back to its selector
            self._rss_after = server_rss_kib(self._pid)
            self._client = Client(url, proxyLocation=str(ca / "proxy.pem"), config=_config(ca))
            self._echo = self._client.echo
        except BaseException:
            _close_all(self._idle)
            raise

    def call(self) -> None:
        _check(self._echo(_TEXT))

    def extras(self) -> dict[str, Any]:
        after_calls = server_rss_kib(self._pid)
        return {
            "idle_connections": len(self._idle) - 1,
            "open_seconds": self._open_seconds,
            "server_rss_before_mib": self._rss_before / 1024,
            "server_rss_after_mib": self._rss_after / 1024,
            "server_rss_after_calls_mib": after_calls / 1024,
            "kib_per_connection": (self._rss_after - self._rss_before) / max(1, len(self._idle) - 1),
        }

    def close(self) -> None:
        try:
            self._client.close()
        finally:
            _close_all(self._idle)


def _idle_plan(base: Plan, quick: bool) -> Plan:
    return Plan(warmup=min(base.warmup, 0.5), repetitions=base.repetitions, duration=base.duration)


IDLE_CASES = (
    Case(
        "idle_1000",
        "1,000 idle dips:// connections open (reuse negotiated, each after one call); meanwhile another Client's"
        " echo calls on a reused connection; server VmRSS before/after",
        "rpc_reused",
        serve_idle,
        IdleConnections,
        kind="idle",
        plan=_idle_plan,
        max_rounds=1,
        setup_seconds=_OPEN_LIMIT + 30.0,
    ),
)
