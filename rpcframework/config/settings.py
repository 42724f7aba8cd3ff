"""Typed readers for the options rpcframework uses, with DIRAC's defaults.

Each reader takes a :class:`~rpcframework.config.tree.ConfigTree` snapshot and returns a frozen value, so a server
re-reads them from each new snapshot after a reload. :data:`KNOWN_OPTIONS` lists every option read here with its
default and meaning (``check-config`` and ``docs/configuration.md`` use the same list).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from rpcframework.config.tree import ConfigTree, ValueSource, split_path
from rpcframework.config.urls import SCHEMES, parse_system_component, system_section_candidates
from rpcframework.errors import ConfigurationError

#: The longest TLS session lifetime accepted (a day): resumption skips chain verification, so it must not last.
MAX_SESSION_LIFETIME = 86_400

DEFAULT_PORT = 9876  # DIRAC's ServiceConfiguration fallback; real deployments always set Port
DEFAULT_PROTOCOL = "dips"
DEFAULT_MAX_THREADS = 15
DEFAULT_MAX_WAITING_PETITIONS = 100  # the value in DIRAC's code (its docs say 500)
DEFAULT_SETUP = "Test"
DEFAULT_VO = "unknown"


@dataclass(frozen=True)
class KnownOption:
    path: str  # with <System>, <Component>, <method> placeholders
    default: str
    meaning: str


KNOWN_OPTIONS: tuple[KnownOption, ...] = (
    KnownOption("/Systems/<System>/URLs/<Component>", "", "comma-separated dip(s) URLs of the service"),
    KnownOption("/Systems/<System>/FailoverURLs/<Component>", "", "URLs tried after every primary URL failed"),
    KnownOption("/Systems/<System>/Services/<Component>/Port", str(DEFAULT_PORT), "TCP port the service listens on"),
    KnownOption("/Systems/<System>/Services/<Component>/Protocol", DEFAULT_PROTOCOL, "dips (TLS) or dip (plain)"),
    KnownOption(
        "/Systems/<System>/Services/<Component>/MaxThreads", str(DEFAULT_MAX_THREADS), "worker threads of the service"
    ),
    KnownOption(
        "/Systems/<System>/Services/<Component>/MaxWaitingPetitions",
        str(DEFAULT_MAX_WAITING_PETITIONS),
        "queued requests before the service answers 'overloaded'",
    ),
    KnownOption(
        "/Systems/<System>/Services/<Component>/MaxTransfers",
        "",
        "file transfers run at once (default: half of MaxThreads; always at least one worker left for calls)",
    ),
    KnownOption(
        "/Systems/<System>/Services/<Component>/MaxTransfersPerIdentity",
        "",
        "file transfers one caller (DN, or address without one) runs at once (default: half of MaxTransfers)",
    ),
    KnownOption(
        "/Systems/<System>/Services/<Component>/CloneProcesses",
        "0",
        "worker processes serving the service's port (0 or 1: a single process)",
    ),
    KnownOption(
        "/Systems/<System>/Services/<Component>/Authorization/<method>", "", "rule list; overrides the handler's auth_"
    ),
    KnownOption(
        "/Systems/<System>/Services/<Component>/Authorization/Default", "", "rule list for methods without any rule"
    ),
    KnownOption("/DIRAC/Setup", DEFAULT_SETUP, "setup name sent in the proposal"),
    KnownOption("/DIRAC/VirtualOrganization", DEFAULT_VO, "VO name sent in the proposal"),
    KnownOption("/DIRAC/Security/CertFile", "", "host/service certificate (PEM)"),
    KnownOption("/DIRAC/Security/KeyFile", "", "key of CertFile (PEM)"),
    KnownOption("/DIRAC/Security/CALocation", "", "hashed CA directory (with CRLs)"),
    KnownOption("/DIRAC/Security/UseServerCertificate", "no", "clients use the host certificate instead of a proxy"),
    KnownOption("/DIRAC/Security/SkipCAChecks", "no", "clients skip server verification (never with certificates)"),
    KnownOption("/DIRAC/Security/TLSSessionLifetime", "300", "services: seconds a TLS session may be resumed (0: off)"),
    KnownOption("/DIRAC/Security/TLSSessionCacheSize", "1024", "services: full handshakes kept for resumption"),
)


@dataclass(frozen=True)
class ServiceSettings:
    """The options of one service section (``/Systems/<S>/Services/<C>``)."""

    name: str  # "System/Component"
    section: str  # the section path the values came from
    port: int = DEFAULT_PORT
    protocol: str = DEFAULT_PROTOCOL
    max_threads: int = DEFAULT_MAX_THREADS
    max_waiting_petitions: int = DEFAULT_MAX_WAITING_PETITIONS
    clone_processes: int = 0  # CloneProcesses: worker processes on the service's port (0 or 1: one process)
    max_transfers: int | None = None  # MaxTransfers (None: derived from MaxThreads, see transfer_limits)
    max_transfers_per_identity: int | None = None  # MaxTransfersPerIdentity (None: derived from MaxTransfers)
    # method ("ping", "FileTransfer/FromClient", "Default") -> rule tokens, exactly as configured
    authorization: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    sources: Mapping[str, ValueSource] = field(default_factory=dict)

    def configured_rule(self, method: str) -> tuple[str, ...] | None:
        """``Authorization/<method>`` when set and non-empty (an empty value counts as unset, as in DIRAC)."""
        return self.authorization.get(method) or None

    @property
    def default_rule(self) -> tuple[str, ...] | None:
        """``Authorization/Default`` when set and non-empty."""
        return self.authorization.get("Default") or None

    def transfer_limits(self, max_threads: int) -> tuple[int, int]:
        """(transfers at once, per identity) for a service with ``max_threads`` workers: ``MaxTransfers``
        (default half the workers, rounded up) but always one worker fewer than there are, so a stalled transfer
        can never hold every worker; ``MaxTransfersPerIdentity`` (default half of that) at most that."""
        total = self.max_transfers or (max_threads + 1) // 2
        total = max(1, min(total, max_threads - 1))
        per_identity = self.max_transfers_per_identity or max(1, total // 2)
        return total, min(per_identity, total)


def service_section(config: ConfigTree, service: str) -> str:
    """``/Systems/<S>/Services/<C>``, or the old ``/Systems/<S>/<Instance>/Services/<C>`` when only that exists."""
    system, component = parse_system_component(service)
    candidates = [f"{base}/Services/{component}" for base in system_section_candidates(config, system)]
    for candidate in candidates:
        if config.has_section(candidate):
            return candidate
    return candidates[0]


def _read_authorization(config: ConfigTree, section: str) -> dict[str, tuple[str, ...]]:
    auth = config.get_section(f"{section}/Authorization")
    rules: dict[str, tuple[str, ...]] = {}
    for path, _value, _source in auth.items():
        # Nested keys (FileTransfer/FromClient) keep their relative path as the method name.
        rules["/".join(split_path(path))] = auth.get_list(path)
    return rules


def _positive_int(config: ConfigTree, path: str, default: int) -> int:
    value = config.get_int(path, default)
    if value < 1:
        raise ConfigurationError(f"{path}: must be at least 1, got {value}")
    return value


def read_service_settings(config: ConfigTree, service: str) -> ServiceSettings:
    """Read ``/Systems/<S>/Services/<C>/*`` for ``service`` (``"System/Component"``) with DIRAC's defaults."""
    system, component = parse_system_component(service)
    section = service_section(config, service)
    port = config.get_int(f"{section}/Port", DEFAULT_PORT)
    if not 0 <= port < 65536:
        raise ConfigurationError(f"{section}/Port: must be between 0 and 65535, got {port}")
    protocol = config.get_str(f"{section}/Protocol", DEFAULT_PROTOCOL).lower()
    if protocol not in SCHEMES:
        raise ConfigurationError(f"{section}/Protocol: must be dips or dip, got {protocol!r}")
    sources = {
        name: config.get_with_source(f"{section}/{name}")[1]
        for name in ("Port", "Protocol", "MaxThreads", "MaxWaitingPetitions", "CloneProcesses")
    }
    clone_processes = config.get_int(f"{section}/CloneProcesses", 0)
    if clone_processes < 0:
        raise ConfigurationError(f"{section}/CloneProcesses: must be 0 or more, got {clone_processes}")
    transfers = config.get_int(f"{section}/MaxTransfers", 0)
    per_identity = config.get_int(f"{section}/MaxTransfersPerIdentity", 0)
    if transfers < 0 or per_identity < 0:
        raise ConfigurationError(f"{section}/MaxTransfers and MaxTransfersPerIdentity must be positive when set")
    return ServiceSettings(
        name=f"{system}/{component}",
        section=section,
        port=port,
        protocol=protocol,
        max_threads=_positive_int(config, f"{section}/MaxThreads", DEFAULT_MAX_THREADS),
        max_waiting_petitions=_positive_int(config, f"{section}/MaxWaitingPetitions", DEFAULT_MAX_WAITING_PETITIONS),
        clone_processes=clone_processes,
        max_transfers=transfers or None,
        max_transfers_per_identity=per_identity or None,
        authorization=_read_authorization(config, section),
        sources=sources,
    )


@dataclass(frozen=True)
class SecuritySettings:
    """``/DIRAC/Security``: where the service's own credentials and the CAs are (None when unset)."""

    cert_file: str | None = None
    key_file: str | None = None
    ca_location: str | None = None
    use_server_certificate: bool = False
    skip_ca_checks: bool = False
    tls_session_lifetime: int = 300
    tls_session_cache_size: int = 1024


def read_security_settings(config: ConfigTree) -> SecuritySettings:
    """The ``/DIRAC/Security`` options (credential files, CA location, server certificate, CA-check switch)."""
    base = "/DIRAC/Security"
    use_cert = config.get_bool(f"{base}/UseServerCertificate", False)
    return SecuritySettings(
        cert_file=config.get_str(f"{base}/CertFile") or None,
        key_file=config.get_str(f"{base}/KeyFile") or None,
        ca_location=config.get_str(f"{base}/CALocation") or None,
        use_server_certificate=use_cert,
        # DIRAC forces CA checks on when the host certificate is used; so do we.
        skip_ca_checks=config.get_bool(f"{base}/SkipCAChecks", False) and not use_cert,
        tls_session_lifetime=_int_in(config, f"{base}/TLSSessionLifetime", 300, 0, MAX_SESSION_LIFETIME),
        tls_session_cache_size=_int_in(config, f"{base}/TLSSessionCacheSize", 1024, 1, 1_000_000),
    )


def _int_in(config: ConfigTree, path: str, default: int, low: int, high: int) -> int:
    value = config.get_int(path, default)
    if not low <= value <= high:
        raise ConfigurationError(f"{path}: expected an integer from {low} to {high}, got {value}")
    return value


def dirac_setup(config: ConfigTree) -> str:
    """``/DIRAC/Setup``, else DIRAC's client fallback ``"Test"``."""
    return config.get_str("/DIRAC/Setup", DEFAULT_SETUP)


def virtual_organization(config: ConfigTree) -> str:
    """``/DIRAC/VirtualOrganization``, else DIRAC's client fallback ``"unknown"``."""
    return config.get_str("/DIRAC/VirtualOrganization", DEFAULT_VO)


def describe_known_options(config: ConfigTree) -> list[tuple[str, str | None, ValueSource]]:
    """The fixed-path known options with their effective value and source (defaults included)."""
    rows: list[tuple[str, str | None, ValueSource]] = []
    for known in KNOWN_OPTIONS:
        if "<" in known.path:
            continue
        value, source = config.get_with_source(known.path, known.default or None)
        rows.append((known.path, value, source))
    return rows
