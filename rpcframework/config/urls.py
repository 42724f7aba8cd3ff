"""Service URLs: parsing ``dip(s)://host:port/System/Component`` and resolving ``System/Component`` from the tree.

Resolution follows DIRAC 9 (no setups)::

    /Systems/<System>/URLs/<Component>          = dips://h1:9135/System/Component, dips://h2:9135/System/Component
    /Systems/<System>/FailoverURLs/<Component>  = dips://far:9135/System/Component

and falls back to the older layout ``/Systems/<System>/<Instance>/URLs/<Component>`` where
``<Instance> = /DIRAC/Setups/<Setup>/<System>`` and ``<Setup> = /DIRAC/Setup``. A URL without a path gets
``/System/Component`` appended and ``$MAINSERVERS$`` expands from ``/Operations/Defaults/MainServers``, as in
DIRAC. The order is kept and duplicates are dropped; shuffling is the client's business.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from rpcframework.config.tree import ConfigTree, split_list
from rpcframework.errors import ConfigurationError

SCHEMES = ("dip", "dips")
MAIN_SERVERS_TOKEN = "$MAINSERVERS$"
MAIN_SERVERS_PATH = "/Operations/Defaults/MainServers"

_URL_RE = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<netloc>[^/?#]*)(?P<path>[^?#]*)(?P<rest>.*)$")
_HOST_RE = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class ServiceURL:
    """A parsed DISET URL. ``host`` is bare (no brackets, even for IPv6); ``str()`` gives the canonical form."""

    scheme: str
    host: str
    port: int
    path: str  # "System/Component"

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def system(self) -> str:
        return self.path.split("/")[0]

    @property
    def component(self) -> str:
        return self.path.split("/")[1]

    @property
    def secure(self) -> bool:
        return self.scheme == "dips"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.netloc}/{self.path}"


@dataclass(frozen=True)
class ServiceURLs:
    """Where a service lives: the primary URLs (the client shuffles them) and the failover URLs (tried last)."""

    primary: tuple[str, ...]
    failover: tuple[str, ...] = ()

    @property
    def all(self) -> tuple[str, ...]:
        return self.primary + self.failover


def _example(scheme: str = "dips", path: str = "System/Component") -> str:
    return f"{scheme}://host:9135/{path}"


def parse_system_component(name: str) -> tuple[str, str]:
    """``"DataManagement/Dispatcher"`` -> ``("DataManagement", "Dispatcher")``, with a helpful error otherwise."""
    parts = [p.strip() for p in name.strip().strip("/").split("/")]
    if len(parts) != 2 or not all(_NAME_RE.match(p) for p in parts):
        raise ConfigurationError(
            f"service name must be 'System/Component' (e.g. DataManagement/Dispatcher), got {name!r}"
        )
    return parts[0], parts[1]


def _parse_host(netloc: str, url: str, scheme: str, path: str) -> tuple[str, str]:
    """Split ``host:port`` (``[v6]:port``) and return (host, port text)."""
    if "@" in netloc:
        raise ConfigurationError(f"{url!r}: user information is not allowed in a {scheme} URL")
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            raise ConfigurationError(f"{url!r}: unclosed '[' around an IPv6 address")
        host, after = netloc[1:end], netloc[end + 1 :]
        try:
            ipaddress.IPv6Address(host.split("%")[0])
        except ValueError:
            raise ConfigurationError(f"{url!r}: {host!r} in brackets is not an IPv6 address") from None
        if after and not after.startswith(":"):
            raise ConfigurationError(f"{url!r}: expected ':port' after the IPv6 address")
        return host, after[1:] if after else ""
    if netloc.count(":") > 1:
        raise ConfigurationError(
            f"{url!r}: an IPv6 address must be written in brackets: {scheme}://[2001:db8::1]:9135/{path or 'S/C'}"
        )
    host, _, port = netloc.partition(":")
    if not host:
        raise ConfigurationError(f"{url!r}: no host; expected {_example(scheme, path or 'System/Component')}")
    if not _HOST_RE.match(host):
        raise ConfigurationError(f"{url!r}: {host!r} is not a valid host name")
    return host, port


def _parse_port(text: str, url: str, scheme: str, path: str) -> int:
    if not text:
        raise ConfigurationError(
            f"{scheme} URL needs a port: {_example(scheme, path or 'System/Component')} (got {url!r})"
        )
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigurationError(f"{url!r}: port must be a number between 1 and 65535, got {text!r}")
    return int(text)


def _parse_path(raw: str, url: str, default_path: str | None) -> str:
    path = raw.strip("/")
    if not path:
        if default_path is None:
            raise ConfigurationError(f"{url!r}: no service path; expected {_example()}")
        path = default_path
    system, component = parse_system_component(path) if path.count("/") == 1 else ("", "")
    if not system:
        raise ConfigurationError(f"{url!r}: the path must be 'System/Component', got '/{path}'")
    return f"{system}/{component}"


def parse_url(url: str, *, default_path: str | None = None) -> ServiceURL:
    """Parse one ``dip://`` or ``dips://`` URL; a missing path becomes ``default_path`` when given.

    Raises :class:`ConfigurationError` saying what is wrong and showing the expected form.
    """
    text = url.strip()
    match = _URL_RE.match(text)
    if not match:
        if "/" in text and "://" not in text:
            raise ConfigurationError(f"{url!r} is not a URL; expected {_example()} (or a System/Component name)")
        raise ConfigurationError(f"{url!r} is not a URL; expected {_example()}")
    scheme = match["scheme"].lower()
    if scheme not in SCHEMES:
        raise ConfigurationError(
            f"{url!r}: unsupported scheme {match['scheme']!r}; rpcframework speaks dip:// (plain) and dips:// (TLS)"
        )
    if match["rest"]:
        raise ConfigurationError(f"{url!r}: query strings and fragments are not allowed in a {scheme} URL")
    path = _parse_path(match["path"], text, default_path)
    host, port_text = _parse_host(match["netloc"], text, scheme, path)
    port = _parse_port(port_text, text, scheme, path)
    return ServiceURL(scheme, host, port, path)


def parse_url_list(value: str, *, default_path: str | None = None) -> tuple[ServiceURL, ...]:
    """A comma-separated list of URLs (whitespace around items ignored, duplicates dropped, order kept)."""
    result: list[ServiceURL] = []
    for item in split_list(value):
        parsed = parse_url(item, default_path=default_path)
        if parsed not in result:
            result.append(parsed)
    return tuple(result)


def _expand_main_servers(items: tuple[str, ...], config: ConfigTree, where: str) -> tuple[str, ...]:
    expanded: list[str] = []
    for item in items:
        if MAIN_SERVERS_TOKEN not in item:
            expanded.append(item)
            continue
        servers = config.get_list(MAIN_SERVERS_PATH)
        if not servers:
            raise ConfigurationError(f"{where} uses {MAIN_SERVERS_TOKEN} but {MAIN_SERVERS_PATH} is not set")
        expanded.extend(item.replace(MAIN_SERVERS_TOKEN, server) for server in servers)
    return tuple(expanded)


def _urls_at(config: ConfigTree, path: str, default_path: str) -> tuple[str, ...]:
    items = _expand_main_servers(config.get_list(path), config, path)
    urls: list[str] = []
    for item in items:
        try:
            parsed = str(parse_url(item, default_path=default_path))
        except ConfigurationError as exc:
            raise ConfigurationError(f"{path}: {exc}") from None
        if parsed not in urls:
            urls.append(parsed)
    return tuple(urls)


def system_section_candidates(config: ConfigTree, system: str) -> tuple[str, ...]:
    """``/Systems/<System>`` first (DIRAC 9), then the setup-instance section when the old layout is configured."""
    candidates = [f"/Systems/{system}"]
    setup = config.get_str("/DIRAC/Setup")
    if setup:
        instance = config.get_str(f"/DIRAC/Setups/{setup}/{system}")
        if instance:
            candidates.append(f"/Systems/{system}/{instance}")
    return tuple(candidates)


def resolve_service_urls(config: ConfigTree, service: str) -> ServiceURLs:
    """The URLs of ``service``: a ``System/Component`` name, or one or more full URLs passed through.

    Raises :class:`ConfigurationError` when nothing is configured, naming the option to set.
    """
    text = service.strip()
    if "://" in text:
        return ServiceURLs(tuple(str(u) for u in parse_url_list(text)))
    system, component = parse_system_component(text)
    path = f"{system}/{component}"
    for section in system_section_candidates(config, system):
        primary = _urls_at(config, f"{section}/URLs/{component}", path)
        if primary:
            return ServiceURLs(primary, _urls_at(config, f"{section}/FailoverURLs/{component}", path))
    raise ConfigurationError(
        f"no URL configured for {path}: set /Systems/{system}/URLs/{component} = dips://host:port/{path} "
        f"(or pass a full URL)"
    )
