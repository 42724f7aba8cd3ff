"""A host name with several addresses is several endpoints (round-robin DNS, a Kubernetes headless Service).

For each URL whose host is a name, the client asks the resolver once when it is built. A name that resolves to
several addresses of one family becomes one *target* per address, named ``<url>#<address>``: the client spreads its
calls over them, fails over between them and bans them one by one like separate URLs, connecting to the address
and checking the server's certificate against the name. The names are resolved again after ``interval`` seconds
(30 by default, like gRPC's DNS resolver's minimum), by the next call that finds them due, so instances added to or
removed from the name are followed; when resolution fails, the targets already known are kept.

A name with a single address (or one IPv4 and one IPv6 address: the same host, dual-stacked) stays one endpoint,
as before: each new connection resolves it and tries its addresses in turn. The resolver is injectable
(``resolver(host, port) -> addresses``), so tests need no DNS.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from rpcframework.config import ServiceURL
from rpcframework.errors import NameResolutionError
from rpcframework.transports.plain import name_resolution_error

__all__ = ["DEFAULT_RESOLVE_INTERVAL", "AddressBook", "Resolver", "split_target", "system_resolver"]

logger = logging.getLogger(__name__)

#: Seconds between two resolutions of the names of one client.
DEFAULT_RESOLVE_INTERVAL = 30.0
#: At most this many addresses of one name are used (a misconfigured name must not open thousands of pools).
MAX_ADDRESSES = 64

Resolver = Callable[[str, int], Sequence[str]]


def system_resolver(host: str, port: int) -> tuple[str, ...]:
    """The addresses ``getaddrinfo`` gives for ``host`` (``/etc/hosts``, DNS), in its order, without duplicates."""
    infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM)
    return tuple(dict.fromkeys(str(info[4][0]) for info in infos))


def split_target(target: str) -> tuple[str, str | None]:
    """``(url, address)`` of ``<url>#<address>``; ``(target, None)`` for a plain URL."""
    url, sep, address = target.rpartition("#")
    return (url, address) if sep else (target, None)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _spread(addresses: Sequence[str]) -> tuple[str, ...]:
    """The addresses to spread over: the IPv4 ones when there are several, else the IPv6 ones; ``()`` when the
    name is one host (one address, or one of each family)."""
    unique = list(dict.fromkeys(addresses))
    v4 = [a for a in unique if ":" not in a]
    v6 = [a for a in unique if ":" in a]
    chosen = v4 if len(v4) > 1 else v6 if len(v6) > 1 else []
    return tuple(chosen[:MAX_ADDRESSES])


class AddressBook:
    """The targets of a service's URLs, resolved when built and again every ``interval`` seconds. Thread-safe."""

    def __init__(
        self,
        parsed: Mapping[str, ServiceURL],
        *,
        resolver: Resolver | None = None,
        interval: float = DEFAULT_RESOLVE_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._parsed = dict(parsed)
        self._resolver = resolver or system_resolver
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        #: url -> the addresses it was expanded to (only names with several addresses).
        self.expanded: dict[str, tuple[str, ...]] = {}
        # url -> the error of a name that did not resolve when the client was built: the first connection reports
        # it instead of asking DNS a second time at once.
        self._failed: dict[str, NameResolutionError] = {}
        for url, spec in self._parsed.items():
            addresses = self._lookup(url, spec)
            if addresses:
                self.expanded[url] = addresses
        self._next = clock() + interval

    def targets(self, urls: Sequence[str]) -> tuple[str, ...]:
        """``urls`` with each expanded URL replaced by its targets."""
        out: list[str] = []
        for url in urls:
            addresses = self.expanded.get(url)
            out.extend(f"{url}#{address}" for address in addresses) if addresses else out.append(url)
        return tuple(out)

    def take_failure(self, url: str) -> NameResolutionError | None:
        """The resolution failure of ``url`` when the client was built, once (later connections resolve anew)."""
        return self._failed.pop(url, None) if self._failed else None

    def due(self) -> bool:
        """Whether the names should be resolved again (cheap: one clock read; always False without names)."""
        return bool(self.expanded) and self._clock() >= self._next

    def refresh(self) -> bool:
        """Resolve the expanded names again; True when some target changed. One thread does it, the others go on."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            self._next = self._clock() + self.interval
            changed = False
            for url in list(self.expanded):
                addresses = self._lookup(url, self._parsed[url])
                if addresses and addresses != self.expanded[url]:
                    logger.info("%s now resolves to %s", url, ", ".join(addresses))
                    self.expanded[url] = addresses
                    changed = True
            return changed
        finally:
            self._lock.release()

    def _lookup(self, url: str, spec: ServiceURL) -> tuple[str, ...]:
        if _is_address(spec.host):
            return ()
        try:
            return _spread(self._resolver(spec.host, spec.port))
        except (socket.gaierror, UnicodeError) as exc:
            if url not in self.expanded:
                self._failed[url] = name_resolution_error(spec.host, exc)
            logger.info("cannot resolve %s now (%s); keeping what was known", spec.host, exc)
            return self.expanded.get(url, ())
        except OSError as exc:  # the connect will report it, as for any name
            logger.info("cannot resolve %s now (%s); keeping what was known", spec.host, exc)
            return self.expanded.get(url, ())
