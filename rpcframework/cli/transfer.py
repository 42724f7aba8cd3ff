"""``rpcframework transfer``: move files to and from a service with :class:`~rpcframework.TransferClient`.

    rpcframework transfer send URL SOURCE FILE_ID [--token TOKEN]
    rpcframework transfer receive URL FILE_ID DEST [--resume] [--token TOKEN] [--max-size SIZE]
    rpcframework transfer send-bulk URL BULK_ID PATH [PATH ...] [--no-compress]
    rpcframework transfer receive-bulk URL BULK_ID DESTDIR [--no-compress] [--max-size SIZE]
    rpcframework transfer list URL BULK_ID [--no-compress]

``URL`` is a full ``dips://host:port/System/Component`` URL (or a comma list), or ``System/Component`` resolved
through the configuration. Credentials, back end and configuration options are those of ``rpcframework call``;
``--timeout`` bounds each wait for progress (keepalive pings are not progress), ``--max-duration`` the whole
transfer (default: none). Downloads are capped at ``--max-size`` (default 1G; ``0`` for none): a server cannot
fill the disk.

Output: a progress bar on stderr when it is a terminal (``--progress``/``--no-progress`` force it), and the
server's result envelope plus ``bytes``, ``seconds`` and ``MiB/s`` as JSON on stdout (``--output json``, the
default when stdout is not a terminal) or one summary line (``--output text``). Exit status: 0 for ``S_OK``, 1 for
``S_ERROR`` (a refusal, a checksum error, a failure to connect), 2 for usage errors.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rpcframework.cli.client_args import add_client_options, client_options, local_error, output_mode, print_error
from rpcframework.cli.common import say, to_json
from rpcframework.cli.main import EXIT_ERROR, EXIT_OK, SubParsers
from rpcframework.client.transfer import TransferClient
from rpcframework.errors import RPCFrameworkError
from rpcframework.protocol.transfer_events import STREAM_CHECKSUMS
from rpcframework.returnvalues import DReturn
from rpcframework.transfer import ExtractionLimits, ProgressCallback, partial_size

__all__ = ["register"]

MIB = 1024 * 1024
#: What a download may write unless --max-size says otherwise: a server cannot fill the disk.
DEFAULT_MAX_SIZE = "1G"
_SIZE_UNITS = {"": 1, "K": 1024, "M": MIB, "G": 1024 * MIB, "T": 1024 * 1024 * MIB}
_URL_HELP = "dips://host:port/System/Component, or System/Component"
_Operation = Callable[[TransferClient, ProgressCallback], DReturn]


def register(subparsers: SubParsers[argparse.ArgumentParser]) -> None:
    """Add ``rpcframework transfer`` and its actions (send, receive, send-bulk, receive-bulk, list)."""
    parser = subparsers.add_parser(
        "transfer",
        help="send, receive and list files and bulks (DISET file transfer)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    send = _action(actions, "send", "upload SOURCE as FILE_ID")
    send.add_argument("source", metavar="SOURCE", type=Path, help="local file to upload")
    send.add_argument("file_id", metavar="FILE_ID", help="name of the file on the service")
    send.add_argument("--token", default="", help="token passed to the service's hook (default: empty)")

    receive = _action(actions, "receive", "download FILE_ID into DEST (atomically)")
    receive.add_argument("file_id", metavar="FILE_ID", help="name of the file on the service")
    receive.add_argument("dest", metavar="DEST", type=Path, help="local file to write")
    receive.add_argument("--token", default="", help="token passed to the service's hook (default: empty)")
    receive.add_argument(
        "--resume", action="store_true", help="keep partial data on failure and continue it (our servers only)"
    )
    _add_max_size(receive, "the file")

    send_bulk = _action(actions, "send-bulk", "upload PATHs as one archive BULK_ID")
    send_bulk.add_argument("bulk_id", metavar="BULK_ID", help="name of the bulk on the service")
    send_bulk.add_argument("paths", metavar="PATH", nargs="+", type=Path, help="files or directories")
    _add_bulk_options(send_bulk)

    receive_bulk = _action(actions, "receive-bulk", "download the bulk BULK_ID and extract it into DESTDIR")
    receive_bulk.add_argument("bulk_id", metavar="BULK_ID", help="name of the bulk on the service")
    receive_bulk.add_argument("dest_dir", metavar="DESTDIR", type=Path, help="existing directory")
    _add_bulk_options(receive_bulk)
    _add_max_size(receive_bulk, "the archive and what it expands to")
    receive_bulk.add_argument(
        "--max-ratio",
        type=_seconds,
        default=ExtractionLimits().max_ratio,
        metavar="N",
        help="refuse an archive that expands more than N times its size, a decompression bomb (default: %(default)g)",
    )

    listing = _action(actions, "list", "the member names of the bulk BULK_ID")
    listing.add_argument("bulk_id", metavar="BULK_ID", help="name of the bulk on the service")
    _add_bulk_options(listing)


def _action(actions: SubParsers[argparse.ArgumentParser], name: str, what: str) -> argparse.ArgumentParser:
    parser = actions.add_parser(name, help=what, description=f"rpcframework transfer {name}: {what}.")
    parser.add_argument("url", metavar="URL", help=_URL_HELP)
    _add_shared_options(parser)
    parser.set_defaults(handler=_run)
    return parser


def _add_bulk_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--token", default="", help="token passed to the service's hook (default: empty)")
    parser.add_argument(
        "--no-compress",
        dest="compress",
        action="store_false",
        help="plain BULK_ID.tar instead of BULK_ID.tar.bz2 (default: compressed)",
    )


def size_argument(text: str) -> int | None:
    """``--max-size``: bytes, with an optional K/M/G/T suffix (powers of 1024); ``0`` or ``none`` for no cap."""
    value = text.strip().upper().removesuffix("B").removesuffix("I")
    if value in ("0", "NONE"):
        return None
    unit = value[-1:] if value[-1:] in _SIZE_UNITS else ""
    number = value[: len(value) - len(unit)]
    if not number.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a size: write bytes, or e.g. 500M, 2G; 0 for no cap")
    return int(number) * _SIZE_UNITS[unit]


def _add_max_size(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--max-size",
        type=size_argument,
        default=size_argument(DEFAULT_MAX_SIZE),
        metavar="SIZE",
        help=f"refuse {what} past SIZE bytes (K, M, G, T suffixes; 0 for no cap; default: {DEFAULT_MAX_SIZE})",
    )


def _seconds(text: str) -> float:
    """A positive finite number (``--max-duration`` seconds, ``--max-ratio``)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def _add_shared_options(parser: argparse.ArgumentParser) -> None:
    add_client_options(parser, default_output=None)
    for option in parser._actions:
        if option.dest == "timeout":  # TransferClient applies it to each wait for progress, not to the whole transfer
            option.help = "longest wait without progress; keepalive pings do not count (default: %(default)s)"
    parser.add_argument(
        "--max-duration",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="give up when the whole transfer takes longer (default: no limit)",
    )
    parser.add_argument(
        "--checksum",
        choices=STREAM_CHECKSUMS,
        default="crc32",
        help="how our services check the whole file (default: %(default)s; DIRAC services: MD5)",
    )
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument(
        "--progress", dest="progress", action="store_true", default=None, help="show a progress bar on stderr"
    )
    progress.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bar, even on a terminal"
    )


# -- the operations ---------------------------------------------------------------------------------------------


def _operation(args: argparse.Namespace) -> _Operation:
    action = args.action
    if action == "send":
        return lambda tc, cb: tc.sendFile(args.source, args.file_id, args.token, on_progress=cb)
    if action == "receive":
        return lambda tc, cb: tc.receiveFile(
            args.dest, args.file_id, args.token, on_progress=cb, resume=args.resume, max_size=args.max_size
        )
    if action == "send-bulk":
        return lambda tc, cb: tc.sendBulk(args.paths, args.bulk_id, args.token, args.compress, on_progress=cb)
    if action == "receive-bulk":
        return lambda tc, cb: tc.receiveBulk(
            args.dest_dir, args.bulk_id, args.token, args.compress, on_progress=cb, **_bulk_caps(args)
        )
    return lambda tc, cb: tc.listBulk(args.bulk_id, args.token, args.compress)


def _bulk_caps(args: argparse.Namespace) -> dict[str, Any]:
    """``--max-size`` for a bulk caps the archive's bytes and what it may expand to; ``--max-ratio`` the ratio."""
    unpacked = args.max_size if args.max_size is not None else 1 << 62
    return {"max_size": args.max_size, "limits": ExtractionLimits(max_total_size=unpacked, max_ratio=args.max_ratio)}


@contextlib.contextmanager
def _transfer_client(args: argparse.Namespace) -> Iterator[TransferClient]:
    """A :class:`TransferClient` built from the command-line options, as ``rpcframework call`` builds its client."""
    with client_options(args) as options:
        yield TransferClient(args.url, options, checksum=args.checksum, max_duration=args.max_duration)


class _Counter:
    """Records ``on_progress`` calls and forwards them to the progress bar, if any."""

    def __init__(self, show: ProgressCallback | None) -> None:
        self.show = show
        self.first: int | None = None
        self.done = 0

    def __call__(self, done: int, total: int | None) -> None:
        if self.first is None:
            self.first = done
        self.done = done
        if self.show is not None:
            self.show(done, total)


#: The exit status after SIGTERM, as a shell reports a process ended by that signal.
EXIT_TERMINATED = 128 + signal.SIGTERM


class _Terminated(BaseException):
    """SIGTERM arrived: unwinds the transfer like Ctrl-C does, so its temporary files are removed on the way."""


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """While the transfer runs, SIGTERM raises :class:`_Terminated` in the main thread instead of killing the
    process where it stands (which would leave the download's temporary ``.part`` file behind)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    resumed_from = partial_size(args.dest) if args.action == "receive" and args.resume else 0
    started = time.perf_counter()
    with _progress_bar(args) as show:
        counter = _Counter(show)
        try:
            with _sigterm_unwinds(), _transfer_client(args) as client:
                result: DReturn = _operation(args)(client, counter)
        except RPCFrameworkError as exc:
            result = local_error(exc)
        except _Terminated:
            _report(
                args,
                {
                    "OK": False,
                    "Errno": 0,
                    "Message": "stopped by SIGTERM (temporary files removed; a --resume partial file is kept)",
                },
            )
            return EXIT_TERMINATED
    seconds = time.perf_counter() - started
    offset = resumed_from if resumed_from and counter.first == resumed_from else 0
    moved = max(0, counter.done - offset)
    envelope: dict[str, Any] = dict(result)
    envelope.update({"bytes": moved, "seconds": round(seconds, 3), "MiB/s": round(moved / MIB / seconds, 1)})
    if offset:
        envelope["resumed_from"] = offset
    return _report(args, envelope)


def _report(args: argparse.Namespace, envelope: dict[str, Any]) -> int:
    ok = bool(envelope.get("OK"))
    if output_mode(args) == "json":
        print(to_json(envelope))
    elif not ok:
        print_error(f"transfer {args.action}", envelope)
    elif args.action == "list":
        for name in envelope.get("Value") or []:
            say(str(name))
    else:
        print(f"{args.action}: {envelope['bytes']} bytes in {envelope['seconds']:.2f} s ({envelope['MiB/s']} MiB/s)")
    return EXIT_OK if ok else EXIT_ERROR


# -- the progress bar -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _progress_bar(args: argparse.Namespace) -> Iterator[ProgressCallback | None]:
    """A rich progress bar on stderr (on a terminal, or with ``--progress``); ``None`` when none is shown."""
    wanted = args.progress if args.progress is not None else sys.stderr.isatty()
    if not wanted or args.action == "list":
        yield None
        return
    try:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
    except ImportError:  # the "cli" extra is not installed: no bar, the result is printed all the same
        yield None
        return
    console = Console(stderr=True, force_terminal=True if args.progress else None)
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, TimeRemainingColumn(), console=console, transient=False) as bar:
        task = bar.add_task(args.action, total=None)

        def show(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield show
