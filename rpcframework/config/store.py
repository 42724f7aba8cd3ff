"""A reloading configuration store: the current snapshot, re-read when a file changes.

Servers read the registry (banned IPs, users, groups) and authorization rules from the configuration for every
connection, so operators can change them without a restart. :class:`ConfigStore` keeps the current
:class:`~rpcframework.config.tree.ConfigTree`; :meth:`ConfigStore.snapshot` checks the files' modification stamps
at most every ``check_interval`` seconds and swaps in a new snapshot when one changed. A file that fails to parse
leaves the previous snapshot in place (logged, and kept in :attr:`ConfigStore.last_error`): a typo in a live file
must not take a service's authorization down.

A server calls :meth:`ConfigStore.watch`: from then on a thread of the store's own re-reads changed files (and runs
the *preparers*, which build what a server derives from a snapshot, such as the registry) and swaps the finished
snapshot in, while :meth:`~ConfigStore.snapshot` only returns the current one. So the thread that serves connections
never touches the file system or parses configuration, however slow the disk.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rpcframework._listeners import Listeners, call_all
from rpcframework.config.loaders import (
    ENV_JSON,
    ENV_OPTION_PREFIX,
    config_files_from_env,
    env_overrides,
    load_dict,
    load_file,
)
from rpcframework.config.tree import ConfigTree
from rpcframework.errors import ConfigurationError

logger = logging.getLogger(__name__)

# (mtime_ns, size, inode) or None for a missing file: any difference means "re-read".
_Stamp = tuple[int, int, int] | None


def _stamp(path: str) -> _Stamp:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class ConfigStore:
    """Holds the current configuration snapshot built from ``defaults``, then ``files``, then the environment.

    Thread-safe: readers get an immutable snapshot; a reload builds a new tree and swaps it in under a lock.
    """

    def __init__(
        self,
        files: Sequence[str | os.PathLike[str]] = (),
        *,
        defaults: ConfigTree | Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        use_environment: bool = True,
        check_interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._files = tuple(str(f) for f in files)
        if defaults is None:
            self._defaults = ConfigTree()
        elif isinstance(defaults, ConfigTree):
            self._defaults = defaults
        else:
            self._defaults = load_dict(defaults, "<defaults>")
        env = os.environ if environ is None else environ
        # The environment is captured once: it cannot change under a running process anyway.
        self._environ: dict[str, str] = (
            {k: v for k, v in env.items() if k == ENV_JSON or k.startswith(ENV_OPTION_PREFIX)}
            if use_environment
            else {}
        )
        self._check_interval = check_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._listeners: Listeners[[ConfigTree]] = Listeners("configuration change listener")
        self._outcome_listeners: Listeners[[bool]] = Listeners("configuration reload listener")
        self._preparers: Listeners[[ConfigTree]] = Listeners("configuration preparer")
        self._watchers = 0
        self._watch_stop = threading.Event()
        self._watch_thread: threading.Thread | None = None
        self.last_error: ConfigurationError | None = None
        stamps = self._stamps()
        self._snapshot = self._build()  # the first load must succeed: raise ConfigurationError otherwise
        self._stamps_seen = stamps
        self._stamps_loaded = stamps  # the stamps of the files behind the current snapshot
        self._last_check = clock()

    @classmethod
    def from_environment(
        cls,
        extra_files: Sequence[str | os.PathLike[str]] = (),
        *,
        environ: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> ConfigStore:
        """Files from ``RPCFRAMEWORK_CONFIG`` (else ``DIRACSYSCONFIG``), then ``extra_files``, then env overrides."""
        files = (*config_files_from_env(environ), *(str(f) for f in extra_files))
        return cls(files, environ=environ, **kwargs)

    @property
    def files(self) -> tuple[str, ...]:
        return self._files

    def _stamps(self) -> tuple[_Stamp, ...]:
        return tuple(_stamp(f) for f in self._files)

    def _build(self) -> ConfigTree:
        trees = [load_file(f) for f in self._files]
        return self._defaults.merge(*trees, env_overrides(self._environ))

    def snapshot(self) -> ConfigTree:
        """The current tree. Unless the store is watched, it is re-read first if a file changed and
        ``check_interval`` has passed since the last check; a watched store never reads files here."""
        if not self._watchers and self._clock() - self._last_check >= self._check_interval:
            self.refresh()
        return self._snapshot

    def watch(self) -> Callable[[], None]:
        """Re-read changed files on a thread of the store's own, every ``check_interval``; returns a function that
        stops watching (the thread ends when the last watcher stops)."""
        with self._lock:
            self._watchers += 1
            if self._watch_thread is None:
                self._watch_stop = threading.Event()
                self._watch_thread = threading.Thread(
                    target=self._watch_loop, args=(self._watch_stop,), name="rpc-config-watch", daemon=True
                )
                self._watch_thread.start()
        done = threading.Event()

        def unwatch() -> None:
            if done.is_set():
                return
            done.set()
            with self._lock:
                self._watchers -= 1
                if self._watchers or self._watch_thread is None:
                    return
                self._watch_stop.set()
                self._watch_thread = None

        return unwatch

    def _watch_loop(self, stop: threading.Event) -> None:
        while not stop.wait(max(self._check_interval, 0.01)):
            try:
                self.refresh()
            except Exception:  # refresh keeps the old snapshot on errors; this guards the thread itself
                logger.exception("configuration watch failed; retrying at the next check")

    def add_preparer(self, prepare: Callable[[ConfigTree], None]) -> Callable[[], None]:
        """Run ``prepare(tree)`` on every new snapshot before it is swapped in (and now on the current one), so
        what is derived from it (a registry, settings) is built on the reloading thread, not on first use; returns
        a function that removes it. A failing preparer is logged and does not stop the reload."""
        with self._lock:
            remove = self._preparers.add(prepare)
            current = self._snapshot
        call_all([prepare], "configuration preparer", current)
        return remove

    def refresh(self, *, force: bool = False) -> bool:
        """Re-read the files if any changed (or ``force``); True when a new snapshot was swapped in."""
        with self._lock:
            self._last_check = self._clock()
            stamps = self._stamps()
            if not force and stamps == self._stamps_seen:
                return False
            tree, ok = self._reload_locked(stamps)
        if tree is not None:
            logger.info("configuration reloaded from %s", ", ".join(self._files) or "the environment")
            self._listeners.notify(tree)
        if ok is not None:
            self._outcome_listeners.notify(ok)
        return tree is not None

    def _reload_locked(self, stamps: tuple[_Stamp, ...]) -> tuple[ConfigTree | None, bool | None]:
        """Build and swap in a new snapshot (lock held): (the new tree or None, the outcome or None if undecided)."""
        try:
            self._check_not_truncated(stamps)
            tree = self._build()
        except Exception as exc:  # a live reload must never take a running service down: keep the old tree
            self._reload_failed(exc, stamps)
            return None, False
        if self._stamps() != stamps:
            # A file changed while we read it (a non-atomic write in progress): try again at the next check.
            return None, None
        self._preparers.notify(tree)
        self.last_error = None
        self._stamps_seen = stamps
        self._stamps_loaded = stamps
        self._snapshot = tree
        return tree, True

    def _reload_failed(self, exc: Exception, stamps: tuple[_Stamp, ...]) -> None:
        if not isinstance(exc, ConfigurationError):
            exc = ConfigurationError(f"configuration reload failed: {type(exc).__name__}: {exc}")
        if str(exc) != str(self.last_error):
            logger.warning("configuration reload failed, keeping the previous settings: %s", exc)
        self.last_error = exc
        # Remember the stamps so a broken file is not re-parsed on every call until it changes again.
        self._stamps_seen = stamps

    def _check_not_truncated(self, stamps: tuple[_Stamp, ...]) -> None:
        # An editor that truncates then writes leaves an empty file for a moment; an empty live file would drop
        # every ban and rule at once, so it is treated as an error (the previous snapshot stays) until it is filled.
        for path, new, old in zip(self._files, stamps, self._stamps_loaded, strict=True):
            if new is not None and new[1] == 0 and (old is None or old[1] > 0):
                raise ConfigurationError(f"{path} is empty (being rewritten?)")

    def subscribe(self, listener: Callable[[ConfigTree], None]) -> Callable[[], None]:
        """Call ``listener(new_tree)`` after every successful reload; returns a function that unsubscribes it."""
        return self._listeners.add(listener)

    def subscribe_outcomes(self, listener: Callable[[bool], None]) -> Callable[[], None]:
        """Call ``listener(ok)`` after every reload of changed files, successful or not (for metrics); returns a
        function that unsubscribes it."""
        return self._outcome_listeners.add(listener)
