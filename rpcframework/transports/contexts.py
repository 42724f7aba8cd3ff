"""A cache of built TLS contexts, rebuilt when the files they were built from change.

Building a context parses the certificate, key and CA store, which costs far more than a handshake's bookkeeping;
so each back end instance builds one context per ``(TLSConfig, side)`` and reuses it. Operators rotate host
certificates and fetch-crl rewrites CRLs without restarting services, so every ``reload_interval`` seconds (at most)
the cache compares a cheap fingerprint of the files (``stat`` of each credential file, one directory scan of the CA
directory) and rebuilds the context when it differs. A failed rebuild (files caught mid-rotation) keeps the old
context and tries again at the next interval.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from rpcframework._listeners import Listeners
from rpcframework.transports.base import TLSConfig

__all__ = ["ContextCache", "fingerprint"]

logger = logging.getLogger(__name__)

ContextT = TypeVar("ContextT")
Fingerprint = tuple[tuple[str, int, int, int], ...]

_MAX_ENTRIES = 64


def _stat_entry(path: str) -> tuple[str, int, int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return (path, -1, -1, -1)
    return (path, st.st_mtime_ns, st.st_size, st.st_ino)


def fingerprint(tls: TLSConfig) -> Fingerprint:
    """What identifies the current contents of every file a context built from ``tls`` depends on."""
    entries = [_stat_entry(path) for path in tls.credential_files]
    if tls.ca_dir:
        entries.append(_stat_entry(tls.ca_dir))
        try:
            with os.scandir(tls.ca_dir) as listing:
                # In-place rewrites of <hash>.r0 do not touch the directory's mtime, so look at each file.
                entries.extend(
                    (entry.path, st.st_mtime_ns, st.st_size, st.st_ino) for entry in listing for st in (entry.stat(),)
                )
        except OSError:
            pass  # the directory vanished: its own stat entry above already records that
    return tuple(sorted(entries))


@dataclass
class _Entry(Generic[ContextT]):
    context: ContextT
    fingerprint: Fingerprint
    checked_at: float


class ContextCache(Generic[ContextT]):
    """Contexts keyed by ``(TLSConfig, server_side)``, owned by one back end instance; thread-safe."""

    def __init__(self, build: Callable[[TLSConfig, bool], ContextT], reload_interval: float = 60.0) -> None:
        self._build = build
        self.reload_interval = reload_interval
        self._entries: dict[tuple[TLSConfig, bool], _Entry[ContextT]] = {}
        self._lock = threading.Lock()
        self.builds = 0  # how many contexts were built (observable for tests and metrics)
        self._reload_listeners: Listeners[[bool, bool]] = Listeners("TLS reload listener")

    def get(self, tls: TLSConfig, server_side: bool) -> ContextT:
        """The context for ``tls``, building or rebuilding it when needed."""
        key = (tls, server_side)
        entry = self._entries.get(key)
        now = time.monotonic()
        if entry is not None and now - entry.checked_at < self.reload_interval:
            return entry.context
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and now - entry.checked_at < self.reload_interval:
                return entry.context
            return self._refresh(key, entry, now)

    def _refresh(self, key: tuple[TLSConfig, bool], entry: _Entry[ContextT] | None, now: float) -> ContextT:
        tls, server_side = key
        current = fingerprint(tls)
        if entry is not None and entry.fingerprint == current:
            entry.checked_at = now
            return entry.context
        try:
            context = self._build(tls, server_side)
        except Exception:
            if entry is None:
                raise
            logger.warning("TLS files changed but the context could not be rebuilt; keeping the old one", exc_info=True)
            entry.checked_at = now
            self._reloaded(server_side, False)
            return entry.context
        self.builds += 1
        if entry is not None:
            logger.info(
                "TLS credential or CA files changed: reloaded the %s context", "server" if server_side else "client"
            )
            self._reloaded(server_side, True)
        if len(self._entries) >= _MAX_ENTRIES and key not in self._entries:
            oldest = min(self._entries, key=lambda k: self._entries[k].checked_at)
            del self._entries[oldest]
        self._entries[key] = _Entry(context, current, now)
        return context

    def subscribe_reloads(self, listener: Callable[[bool, bool], None]) -> Callable[[], None]:
        """Call ``listener(server_side, ok)`` whenever changed credential, CA or CRL files rebuild a context (or fail
        to); returns a function that unsubscribes it. Called with the cache's lock held: never call back in."""
        return self._reload_listeners.add(listener)

    def _reloaded(self, server_side: bool, ok: bool) -> None:
        self._reload_listeners.notify(server_side, ok)

    def renew(self, tls: TLSConfig, server_side: bool, stale: ContextT) -> None:
        """Replace ``stale`` with a fresh context built from the same files (a no-op if it was already replaced).

        Used to drop a server's TLS session cache, which goes away with the context that holds it.
        """
        key = (tls, server_side)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.context is not stale:
                return
            try:
                entry.context = self._build(tls, server_side)
            except Exception:
                logger.warning("could not rebuild the TLS context to renew its session cache", exc_info=True)
                return
            self.builds += 1

    def clear(self) -> None:
        """Forget every context (the next use rebuilds)."""
        with self._lock:
            self._entries.clear()
