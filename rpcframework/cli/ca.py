"""``rpcframework ca``: a development CA writing the grid credential layout (see docs/security.md).

Sub-commands print what they made; ``issue-user``, ``issue-host`` and ``proxy`` print the new DN in grid form as their
last line so scripts can capture it with ``tail -n1``. ``init`` prints ``export`` lines meant for ``eval``.
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
from pathlib import Path

from rpcframework.cli.main import EXIT_OK, SubParsers
from rpcframework.errors import ConfigurationError, CredentialsError
from rpcframework.security.devca import DEFAULT_CA_NAME, DevCA, IssuedCredential
from rpcframework.security.locations import check_credentials

__all__ = ["register"]


def _when(text: str) -> datetime.datetime:
    """ISO 8601 date or date-time; naive values are UTC."""
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO date or date-time: {text!r} (e.g. 2030-01-31)") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _add_validity(parser: argparse.ArgumentParser, default_days: int = 365) -> None:
    parser.add_argument("--days", type=int, default=default_days, help="validity in days (default: %(default)s)")
    _add_window(parser, "--days")


def _add_window(parser: argparse.ArgumentParser, length: str) -> None:
    parser.add_argument(
        "--not-before",
        type=_when,
        metavar="ISO",
        help=f"start of validity, may be in the future (default: now, or --not-after minus {length})",
    )
    parser.add_argument(
        "--not-after",
        type=_when,
        metavar="ISO",
        help=f"end of validity, may be in the past (default: --not-before plus {length})",
    )


_DIR_HELP = "the dev CA's directory (made by ca init)"


def register(subparsers: SubParsers[argparse.ArgumentParser]) -> None:
    """Add ``rpcframework ca`` and its actions (init, issue-user, issue-host, revoke, proxy)."""
    ca = subparsers.add_parser("ca", help="development certificate authority", description=__doc__)
    commands = ca.add_subparsers(dest="ca_command", metavar="ACTION", required=True)

    init = commands.add_parser("init", help="create a CA, host and user credentials and a proxy in DIR")
    init.add_argument("directory", type=Path, metavar="DIR", help=_DIR_HELP + "; created if missing")
    init.add_argument("--user", default="dev-user", help="CN of the default user (default: %(default)s)")
    init.add_argument("--host", default="localhost", help="CN of the host certificate (default: %(default)s)")
    init.add_argument(
        "--days", type=int, default=365, help="validity of host and user certificates in days (default: %(default)s)"
    )
    init.add_argument(
        "--proxy-hours", type=_positive, default=12.0, help="proxy lifetime in hours (default: %(default)s)"
    )
    init.add_argument(
        "--key-type",
        choices=["rsa", "ec"],
        default="rsa",
        help="rsa is RSA 2048, which DIRAC requires; ec is P-256, faster (default: %(default)s)",
    )
    init.add_argument(
        "--ca-name",
        default=DEFAULT_CA_NAME,
        metavar="CN",
        help="CN of the CA; give a second CA another one to trust both from one directory (default: %(default)s)",
    )
    init.set_defaults(handler=_init)

    user = commands.add_parser("issue-user", help="issue a user certificate and proxy in DIR/users/NAME")
    user.add_argument("directory", type=Path, metavar="DIR", help=_DIR_HELP)
    user.add_argument("name", metavar="NAME", help="the user's CN (/DC=org/DC=rpcframework/OU=Users/CN=NAME)")
    user.add_argument("--out-dir", type=Path, help="where to write the files (default: DIR/users/NAME)")
    user.add_argument(
        "--proxy-hours", type=_positive, default=12.0, help="proxy lifetime in hours (default: %(default)s)"
    )
    _add_validity(user)
    user.set_defaults(handler=_issue_user)

    host = commands.add_parser("issue-host", help="issue a host certificate in DIR/hosts/HOSTNAME")
    host.add_argument("directory", type=Path, metavar="DIR", help=_DIR_HELP)
    host.add_argument("hostname", metavar="HOSTNAME", help="the host's CN (/DC=org/DC=rpcframework/OU=Hosts/CN=...)")
    host.add_argument(
        "--san",
        action="append",
        help="DNS:name or IP:address (repeatable; default: the host name only, so that it cannot pose as localhost)",
    )
    host.add_argument("--out-dir", type=Path, help="where to write the files (default: DIR/hosts/HOSTNAME)")
    _add_validity(host)
    host.set_defaults(handler=_issue_host)

    revoke = commands.add_parser("revoke", help="add a certificate to the CA's CRL")
    revoke.add_argument("directory", type=Path, metavar="DIR", help=_DIR_HELP)
    revoke.add_argument("cert_file", type=Path, metavar="CERTFILE", help="the certificate (or proxy file) to revoke")
    revoke.set_defaults(handler=_revoke)

    proxy = commands.add_parser("proxy", help="sign an RFC 3820 proxy (from a certificate or from another proxy)")
    proxy.add_argument("directory", type=Path, metavar="DIR", help=_DIR_HELP)
    proxy.add_argument("--cert", type=Path, help="signing certificate or proxy file (default: DIR/usercert.pem)")
    proxy.add_argument("--key", type=Path, help="its key (default: DIR/userkey.pem, or --cert when that is given)")
    proxy.add_argument("--out", type=Path, help="proxy file to write (default: DIR/proxy.pem)")
    proxy.add_argument("--hours", type=_positive, default=12.0, help="lifetime (default: %(default)s)")
    proxy.add_argument("--limited", action="store_true", help="Globus limited proxy policy (default: a full proxy)")
    proxy.add_argument(
        "--group",
        metavar="GROUP",
        help="DIRAC group the proxy names (extension 1.2.42.42, as dirac-proxy-init -g; default: none, so services "
        "use the registry's default group)",
    )
    _add_window(proxy, "--hours")
    proxy.set_defaults(handler=_proxy)


def _export(name: str, path: Path) -> str:
    return f"export {name}={shlex.quote(str(path.resolve()))}"


def _init(args: argparse.Namespace) -> int:
    if (Path(args.directory) / "ca" / "cakey.pem").exists():
        # Idempotent, so `eval "$(rpcframework ca init DIR)"` works every time: reuse, never overwrite.
        note = f"note: {args.directory} already holds a dev CA; reusing it (rm -r it to make a new one)"
        print(note, file=sys.stderr)
        ca = DevCA.load(args.directory)
        _note_if_unusable(ca)
    else:
        ca = DevCA.init(
            args.directory,
            user_name=args.user,
            host_name=args.host,
            days=args.days,
            proxy_hours=args.proxy_hours,
            key_type=args.key_type,
            ca_name=args.ca_name,
        )
    user, host = ca.default_user(), ca.default_host()
    print(f"# dev CA {ca.dn} in {args.directory}; user {user.dn}; host {host.dn}")
    print(_export("X509_CERT_DIR", ca.cert_dir))
    if user.proxy_file is not None:
        print(_export("X509_USER_PROXY", user.proxy_file))
    print(_export("X509_USER_CERT", user.cert_file))
    print(_export("X509_USER_KEY", user.key_file))
    print(_export("DIRAC_X509_HOST_CERT", host.cert_file))
    print(_export("DIRAC_X509_HOST_KEY", host.key_file))
    return EXIT_OK


def _note_if_unusable(ca: DevCA) -> None:
    """Say so (with the command that fixes it) when the reused CA's default proxy has expired: the exports below
    would otherwise point at a credential every call refuses."""
    proxy = ca.default_user().proxy_file
    if proxy is None or not proxy.is_file():
        return
    try:
        check_credentials(proxy)
    except CredentialsError as exc:
        print(f"note: {exc}", file=sys.stderr)


def _print_issued(cred: IssuedCredential) -> None:
    print(f"certificate: {cred.cert_file}")
    print(f"key:         {cred.key_file}")
    if cred.proxy_file is not None and cred.proxy_file != cred.cert_file:
        print(f"proxy:       {cred.proxy_file}")
    print(cred.dn)


def _issue_user(args: argparse.Namespace) -> int:
    cred = DevCA.load(args.directory).issue_user(
        args.name,
        days=args.days,
        not_before=args.not_before,
        not_after=args.not_after,
        directory=args.out_dir,
        proxy_hours=args.proxy_hours,
    )
    _print_issued(cred)
    return EXIT_OK


def _issue_host(args: argparse.Namespace) -> int:
    cred = DevCA.load(args.directory).issue_host(
        args.hostname,
        sans=args.san,
        days=args.days,
        not_before=args.not_before,
        not_after=args.not_after,
        directory=args.out_dir,
    )
    _print_issued(cred)
    return EXIT_OK


def _revoke(args: argparse.Namespace) -> int:
    serial = DevCA.load(args.directory).revoke(args.cert_file)
    print(f"revoked serial {serial:x} from {args.cert_file}")
    return EXIT_OK


def _proxy(args: argparse.Namespace) -> int:
    ca = DevCA.load(args.directory)
    cert = args.cert or ca.directory / "usercert.pem"
    key = args.key or (args.cert if args.cert is not None else ca.directory / "userkey.pem")
    if args.out is None and args.cert is not None:
        # Defaulting to DIR/proxy.pem here could overwrite the very file being signed from.
        raise ConfigurationError("--out is required together with --cert")
    out = args.out or ca.directory / "proxy.pem"
    cred = ca.issue_proxy(
        cert,
        key,
        out,
        hours=args.hours,
        limited=args.limited,
        not_before=args.not_before,
        not_after=args.not_after,
        group=args.group,
    )
    print(f"proxy: {cred.proxy_file}")
    print(cred.dn)
    return EXIT_OK
