"""``rpcframework check-config``: every configuration value with its source, and the credentials that would be used.

Prints the configuration files read, every option set (path, value, and the file or environment variable it came
from), the known options left at their built-in defaults, the configured services, and the credentials: what
``call`` would present (proxy or certificate, and how it was found), what ``serve`` would present, and the CA
directory. Exit status 1, with the reasons on stderr, when something the chosen ``--role`` needs is missing,
expired or invalid.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from rpcframework.cli.common import add_config_option, add_log_level_option, load_config
from rpcframework.cli.main import EXIT_ERROR, EXIT_OK, SubParsers
from rpcframework.config import ConfigTree, SourceKind, ValueSource, read_security_settings, read_service_settings
from rpcframework.config.settings import SecuritySettings, describe_known_options
from rpcframework.errors import ConfigurationError, RPCFrameworkError
from rpcframework.security.locations import (
    CADirectory,
    ClientCredentials,
    check_credentials,
    find_ca_dir,
    find_client_credentials,
    find_host_certificate,
)

__all__ = ["register"]


def register(subparsers: SubParsers[argparse.ArgumentParser]) -> None:
    """Add ``rpcframework check-config``."""
    parser = subparsers.add_parser(
        "check-config",
        help="print every configuration value with its source, and the credentials that would be used",
        description=__doc__,
    )
    parser.add_argument(
        "--role",
        choices=["client", "service", "all"],
        default="client",
        help="what must be usable for exit status 0: call's credentials, serve's, or both (default: %(default)s)",
    )
    add_config_option(parser)
    add_log_level_option(parser)
    parser.set_defaults(handler=_check_config)


@dataclass
class _Report:
    """Problems that make the exit status 1 (missing or unusable things the chosen role needs)."""

    problems: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        self.problems.append(message)


def _check_config(args: argparse.Namespace) -> int:
    store = load_config(args.config)  # a file that does not parse is a ConfigurationError: exit 1 with its message
    tree = store.snapshot()
    report = _Report()
    print("# configuration files: " + (", ".join(store.files) or "none"))
    _print_values(tree)
    _print_services(tree, report)
    print()
    print("# credentials")
    try:
        security = read_security_settings(tree)
    except ConfigurationError as exc:
        report.fail(str(exc))
        security = SecuritySettings()
    need_client = args.role in ("client", "all")
    need_service = args.role in ("service", "all")
    _print_client_credentials(tree, security, report if need_client else None)
    _print_service_credentials(tree, security, report, required=need_service)
    _print_ca_dir(tree, security, report, required=need_service or not security.skip_ca_checks)
    if report.problems:
        for problem in report.problems:
            print(f"rpcframework check-config: error: {problem}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def _print_values(tree: ConfigTree) -> None:
    print()
    print("# values (path = value  [source])")
    rows = list(tree.items())
    for path, value, source in rows:
        print(f"{path} = {value}  [{source}]")
    if not rows:
        print("# (nothing set)")
    print()
    print("# known options left at their defaults")
    for path, default, source in describe_known_options(tree):
        if not tree.has_option(path):
            print(f"{path} = {default if default is not None else ''}  [{_shown(source)}]")


def _shown(source: ValueSource) -> str:
    return "default" if source.kind is SourceKind.DEFAULT else str(source)


def _print_services(tree: ConfigTree, report: _Report) -> None:
    names = [
        f"{system}/{component}"
        for system in tree.sections("/Systems")
        for component in tree.sections(f"/Systems/{system}/Services")
    ]
    if not names:
        return
    print()
    print("# services")
    for name in names:
        try:
            settings = read_service_settings(tree, name)
        except ConfigurationError as exc:
            report.fail(f"service {name}: {exc}")
            continue
        handler, handler_source = tree.get_with_source(f"{settings.section}/HandlerPath")
        print(
            f"{name}: {settings.protocol}, port {settings.port}, MaxThreads {settings.max_threads}, "
            f"MaxWaitingPetitions {settings.max_waiting_petitions}, "
            f"HandlerPath {handler or '(not set)'}  [{_shown(handler_source)}]"
        )


def _config_source(tree: ConfigTree, option: str) -> str:
    _value, source = tree.get_with_source(f"/DIRAC/Security/{option}")
    return f"/DIRAC/Security/{option} ({_shown(source)})"


def _describe(what: str, find: Callable[[], ClientCredentials], source: str | None, report: _Report | None) -> None:
    """Print one credential (file, how it was found, DN, expiry) or why there is none; ``report``: it is required."""
    try:
        creds = find()
        identity = check_credentials(creds.cert_file, None if creds.is_proxy_file else creds.key_file)
    except RPCFrameworkError as exc:
        print(f"{what}: unusable: {exc}")
        if report is not None:
            report.fail(f"{what}: {exc}")
        return
    kind = "proxy" if creds.is_proxy_file else "certificate"
    found = source or ("lookup default" if creds.source == "default" else creds.source)
    print(f"{what}: {kind} {creds.cert_file}  [{found}]")
    if not creds.is_proxy_file:
        print(f"{what} key: {creds.key_file}")
    left = int((identity.not_after - datetime.datetime.now(datetime.UTC)).total_seconds())
    print(f"{what} DN: {identity.dn} (valid until {identity.not_after.isoformat()}, {left} s left)")


def _print_client_credentials(tree: ConfigTree, security: SecuritySettings, report: _Report | None) -> None:
    if not security.use_server_certificate:
        _describe("client", find_client_credentials, None, report)
        return
    pair = (security.cert_file, security.key_file) if security.cert_file and security.key_file else (None, None)
    source = _config_source(tree, "CertFile") if pair[0] else None
    _describe("client (UseServerCertificate)", lambda: find_host_certificate(*pair), source, report)


def _print_service_credentials(
    tree: ConfigTree, security: SecuritySettings, report: _Report, *, required: bool
) -> None:
    configured = bool(security.cert_file or security.key_file)
    source = _config_source(tree, "CertFile") if configured else None

    def find() -> ClientCredentials:
        if configured:
            return find_host_certificate(security.cert_file, security.key_file)
        return find_host_certificate()

    # An explicitly configured certificate that is unusable is always an error; a missing default only matters
    # to whoever runs `serve`.
    _describe("service", find, source, report if required or configured else None)


def _print_ca_dir(tree: ConfigTree, security: SecuritySettings, report: _Report, *, required: bool) -> None:
    try:
        ca: CADirectory = find_ca_dir(security.ca_location)
    except RPCFrameworkError as exc:
        print(f"CA directory: unusable: {exc}")
        if required or security.ca_location:
            report.fail(f"CA directory: {exc}")
        return
    source = _config_source(tree, "CALocation") if security.ca_location else ca.source
    if source == "default":
        source = "lookup default"
    anchors = sorted(p.name for p in ca.path.glob("*.0"))
    crls = sorted(p.name for p in ca.path.glob("*.r[0-9]*"))
    print(f"CA directory: {ca.path}  [{source}] ({len(anchors)} CA certificates, {len(crls)} CRLs)")
    if not anchors and required:
        report.fail(f"CA directory {ca.path} holds no <hash>.0 CA certificates")
