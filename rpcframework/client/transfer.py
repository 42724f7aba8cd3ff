"""``TransferClient``: DISET's file-transfer client (``sendFile``, ``receiveFile``, ``sendBulk``, ``receiveBulk``,
``listBulk``) over one fresh connection per transfer.

URLs, failover, credentials and delegation come from :class:`~rpcframework.client.base.BaseClient`, exactly as
for ``Client``. One transfer::

    connect -> proposal ["FileTransfer", direction] -> ack        # failover to another URL on failure
    file info -> "Accepted"                                       # failover still allowed (no data moved)
    data phase (FileHelper)    -> the server's result (the handler's S_OK/S_ERROR)

With our servers the ``stream`` (no per-chunk round trip) and ``resume`` extensions are offered; ``stream=False``
makes a pure DIRAC client (no offer at all). Every operation returns ``S_OK``/``S_ERROR`` and never raises for a
transfer or network failure. Time limits (:mod:`.transfer_pipe`): ``Timeout.connect``/``handshake`` for the
connection; ``Timeout.total`` (``timeout``) for the longest wait without progress, keepalive pings not counting;
``max_duration`` for the whole transfer. ``receiveFile``/``receiveBulk`` take ``max_size``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Final

from rpcframework.client.base import BaseClient, Endpoint
from rpcframework.client.options import ClientOptions
from rpcframework.client.policy import Deadline
from rpcframework.client.transfer_pipe import TransferPipe
from rpcframework.errors import ConfigurationError, RemoteError, RPCFrameworkError
from rpcframework.protocol import NEED_DATA, ClientConnection, Extensions, Feature, ProposalAccepted, ProposalRefused
from rpcframework.protocol.messages import ActionType, FileInfo, TransferDirection
from rpcframework.protocol.transfer import ClientTransfer, TransferAccepted, TransferRefused
from rpcframework.protocol.transfer_events import STREAM_CHECKSUMS
from rpcframework.returnvalues import S_ERROR, DReturn
from rpcframework.transfer import FileHelper, ProgressCallback, bulk_name, compression_for, partial_size
from rpcframework.transfer.bulk import Compression, ExtractionLimits
from rpcframework.transports import Backend

__all__ = ["TRANSFER_OFFER", "TransferClient"]

logger = logging.getLogger(__name__)

#: What a TransferClient offers our servers: the stream data phase, resumable downloads, and CRC-32 as the
#: whole-file check (``checksum="sha256"`` leaves it out, and the stream is checked with SHA-256).
TRANSFER_OFFER: Final = Extensions(features=frozenset({Feature.STREAM, Feature.RESUME, Feature.CRC32}))
_SHA256_OFFER: Final = Extensions(features=TRANSFER_OFFER.features - {Feature.CRC32})
_MAX_CONTROL_READS: Final = 100_000

PathOrFile = str | os.PathLike[str] | IO[bytes]
_Action = Callable[[FileHelper], DReturn]
_InfoFor = Callable[[bool], FileInfo]  # the file info, told whether ``resume`` was negotiated


class _NotStarted(RPCFrameworkError):
    """The transfer failed before any data moved: another URL may be tried."""


class TransferClient:
    """Moves files to and from one service (``"System/Component"``, a URL, or a comma list of URLs).

    Options are ``Client``'s (``proxyLocation``, ``useCertificates``, ``delegatedDN``, ``timeout``, ``retries``,
    ``config``...). ``stream=False`` speaks DIRAC's stop-and-wait protocol even to our servers (checked with MD5, as
    DIRAC does). ``checksum``: how a stream-mode transfer checks the whole file, ``"crc32"`` (default) or
    ``"sha256"`` (see ``docs/transfer.md``, "Checksums"). ``max_duration``: seconds one operation may take in all
    (default: no limit; the ``timeout`` option still bounds every wait for progress).
    """

    def __init__(
        self,
        url: str,
        options: ClientOptions | None = None,
        *,
        stream: bool = True,
        checksum: str = "crc32",
        max_duration: float | None = None,
        backends: dict[str, Backend] | None = None,
        environ: Mapping[str, str] | None = None,
        **kw_options: Any,
    ) -> None:
        if options is None:
            options = ClientOptions.build(kw_options)
        elif kw_options:
            raise ConfigurationError("pass either options= or keyword options, not both")
        if checksum not in STREAM_CHECKSUMS:
            raise ConfigurationError(f"checksum must be 'crc32' or 'sha256', not {checksum!r}")
        if max_duration is not None and not max_duration > 0:
            raise ConfigurationError(f"max_duration must be a positive number of seconds, not {max_duration!r}")
        self.max_duration = max_duration
        offer = (TRANSFER_OFFER if checksum == "crc32" else _SHA256_OFFER) if stream else None
        self.base = BaseClient(url, options, backends=backends, offer=offer, environ=environ)

    def __repr__(self) -> str:
        return f"<TransferClient {self.base.service!r}>"

    # -- DISET's operations ----------------------------------------------------------------------------------------

    def sendFile(
        self, source: PathOrFile, fileId: str, token: str = "", on_progress: ProgressCallback | None = None
    ) -> DReturn:
        """Upload ``source`` (a path or a binary file object) as ``fileId``; the server's result."""
        try:
            size = _size_of(source)
        except OSError as exc:
            return S_ERROR(f"Cannot read {source}: {exc.strerror or exc}")
        info = FileInfo(fileId, token, -1 if size is None else size)
        return self._run(
            TransferDirection.FromClient, lambda _r: info, lambda h: h.fileToNetwork(source), on_progress, size
        )

    def receiveFile(
        self,
        destination: PathOrFile,
        fileId: str,
        token: str = "",
        on_progress: ProgressCallback | None = None,
        *,
        resume: bool = False,
        max_size: int | None = None,
    ) -> DReturn:
        """Download ``fileId`` into ``destination`` (a path, written atomically, or a binary file object).
        ``resume=True`` keeps partial data on failure and continues it next time (our servers only); ``max_size``
        refuses a file larger than that many bytes as it arrives (``"Exceeded maximum file size"``)."""
        is_path = isinstance(destination, str | os.PathLike)
        resume = resume and is_path

        negotiated = [False]

        def info_for(resume_ok: bool) -> FileInfo:
            negotiated[0] = resume and resume_ok
            offset = partial_size(destination) if negotiated[0] else 0  # type: ignore[arg-type]
            return FileInfo(fileId, token, offset=offset)

        def action(helper: FileHelper) -> DReturn:
            return helper.networkToFile(destination, max_size, resume=negotiated[0])

        return self._run(TransferDirection.ToClient, info_for, action, on_progress, None)

    def sendBulk(
        self,
        paths: Sequence[str | os.PathLike[str]],
        bulkId: str,
        token: str = "",
        compress: bool = True,
        on_progress: ProgressCallback | None = None,
    ) -> DReturn:
        """Upload ``paths`` as one tar archive named ``bulkId`` + ``.tar.bz2`` (``.tar`` without compression);
        progress counts archive bytes."""
        info = FileInfo(bulk_name(bulkId, compress), token, -1)
        paths = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
        missing = [str(path) for path in paths if not os.path.exists(path)]
        if missing:
            return S_ERROR(f"Cannot send the bulk: missing {', '.join(missing)}")
        compression: Compression = "bz2" if compress else ""
        return self._run(
            TransferDirection.BulkFromClient,
            lambda _r: info,
            lambda h: h.bulkToNetwork(paths, compression),
            on_progress,
            None,
        )

    def receiveBulk(
        self,
        destDir: str | os.PathLike[str],
        bulkId: str,
        token: str = "",
        compress: bool = True,
        on_progress: ProgressCallback | None = None,
        *,
        max_size: int | None = None,
        limits: ExtractionLimits | None = None,
    ) -> DReturn:
        """Download the bulk ``bulkId`` and extract it (safely) into ``destDir``; progress counts archive bytes.
        ``max_size`` caps the archive as it arrives, ``limits`` what it may expand to (default
        :class:`~rpcframework.transfer.ExtractionLimits`: 1 GiB, 200:1)."""
        name = bulk_name(bulkId, compress)
        info = FileInfo(name, token)
        if not Path(destDir).is_dir():
            return S_ERROR(f"{destDir} is not a directory")
        return self._run(
            TransferDirection.BulkToClient,
            lambda _r: info,
            lambda h: h.networkToBulk(destDir, compression_for(name), max_size=max_size, limits=limits),
            on_progress,
            None,
        )

    def listBulk(self, bulkId: str, token: str = "", compress: bool = True) -> DReturn:
        """The member names of the bulk ``bulkId``, as the server lists them."""
        info = FileInfo(bulk_name(bulkId, compress), token)
        listed = self._run(TransferDirection.ListBulk, lambda _r: info, lambda h: h.read_result(), None, None)
        return checked_listing(listed)

    # -- one transfer, with failover before data moves -------------------------------------------------------------

    def _run(
        self,
        direction: TransferDirection,
        info_for: _InfoFor,
        action: _Action,
        on_progress: ProgressCallback | None,
        total: int | None,
    ) -> DReturn:
        base = self.base
        failures: list[str] = []
        deadline = Deadline.after(self.max_duration)
        for url in base.selector.attempt_order(base.retry.max_attempts):
            if deadline.expired:
                failures.append(f"max_duration ({self.max_duration:g} s) reached")
                break
            try:
                result = self._run_url(
                    base.endpoints[url],
                    deadline,
                    direction=direction,
                    info_for=info_for,
                    action=action,
                    on_progress=on_progress,
                    total=total,
                )
            except RemoteError as exc:
                return exc.result  # the server refused the proposal (unauthorized...): not retried
            except _NotStarted as exc:
                failures.append(f"{url}: {exc}")
                base.selector.ban(url)
                logger.info("transfer %s to %s failed before any data moved (%s)", direction.value, url, exc)
                continue
            base.selector.succeeded(url)
            return result
        reasons = "; ".join(failures) or "no URL to try"
        return S_ERROR(f"{base.service}: the transfer could not start: {reasons}")

    def _run_url(
        self,
        endpoint: Endpoint,
        limit: Deadline,
        *,
        direction: TransferDirection,
        info_for: _InfoFor,
        action: _Action,
        on_progress: ProgressCallback | None,
        total: int | None,
    ) -> DReturn:
        timeout = self.base.timeout
        try:
            deadline = Deadline.after(timeout.total).min(limit)
            stream = endpoint.backend.connect(
                endpoint.host,
                endpoint.port,
                tls=endpoint.tls,
                server_hostname=endpoint.server_name,  # an address of the URL's host name: its certificate names it
                connect_timeout=timeout.connect_deadline(deadline).remaining(),
                handshake_timeout=timeout.handshake_deadline(deadline).remaining(),
                keepalive=timeout.keepalive,
            )
        except (RPCFrameworkError, OSError) as exc:
            raise _NotStarted(str(exc)) from exc
        pipe = TransferPipe(stream, timeout.total, limit, self.max_duration)
        try:
            machine = self._start(endpoint, pipe, direction, info_for)
            if machine is None or isinstance(machine, dict):
                return machine or S_ERROR("Transfer refused")
            pipe.progress = lambda: machine.progress
            helper = FileHelper(machine, pipe, on_progress=on_progress, total=total)
            return _finish(helper, action)
        finally:
            stream.close()

    def _start(
        self,
        endpoint: Endpoint,
        pipe: TransferPipe,
        direction: TransferDirection,
        info_for: _InfoFor,
    ) -> ClientTransfer | DReturn | None:
        """Proposal, ack, file info, "Accepted": the machine ready for the data phase, or the server's refusal."""
        base = self.base
        conn = ClientConnection(offer=base.offer)
        proposal = dataclasses.replace(
            base.proposal(endpoint.path, direction.value), action_type=ActionType.FileTransfer
        )
        try:
            pipe.send(conn.send_proposal(proposal))
            event = _next(conn, pipe)
            if isinstance(event, ProposalRefused):
                raise RemoteError(event.error)
            if not isinstance(event, ProposalAccepted):
                raise _NotStarted(f"unexpected answer to the proposal: {type(event).__name__}")
            machine = ClientTransfer(conn.hand_over())
            resume_ok = event.extensions is not None and Feature.RESUME in event.extensions.features
            pipe.send(machine.start(info_for(resume_ok and direction is TransferDirection.ToClient)))
            answer = _next(machine, pipe)
        except (RemoteError, _NotStarted):
            raise
        except (RPCFrameworkError, OSError) as exc:
            raise _NotStarted(str(exc)) from exc
        if isinstance(answer, TransferRefused):
            return answer.error
        if not isinstance(answer, TransferAccepted):
            raise _NotStarted(f"unexpected answer to the file information: {type(answer).__name__}")
        return machine


def _next(machine: ClientConnection | ClientTransfer, pipe: TransferPipe) -> object:
    """The next control event of ``machine``, reading as needed (keepalive pongs are sent and skipped: a server
    that only pings makes no progress, and the pipe ends the wait)."""
    for _ in range(_MAX_CONTROL_READS):
        event = machine.next_event()
        pipe.send(machine.data_to_send())
        if event is not NEED_DATA:
            pipe.moved_on()
            return event
        machine.receive_data(pipe.recv())
    raise _NotStarted("no answer after many reads")


def _finish(helper: FileHelper, action: _Action) -> DReturn:
    """Run the data phase, then read the server's result; a local failure wins unless the server says why."""
    try:
        local = action(helper)
    except (RPCFrameworkError, OSError) as exc:
        return S_ERROR(f"Transfer failed: {exc}")
    if helper.machine.direction is TransferDirection.ListBulk:
        return local
    if not local["OK"] and helper.machine.local_abort is not None and not helper.machine.data_done:
        return local  # we gave up mid data phase: what the server still sends is not worth reading
    try:
        server = helper.read_result()
    except (RPCFrameworkError, OSError) as exc:
        logger.debug("no result from the server after the transfer: %s", exc)
        return local if not local["OK"] else S_ERROR(f"Transfer failed: no result from the server ({exc})")
    if not local["OK"]:
        return server if not server["OK"] else local
    return server


def _size_of(source: PathOrFile) -> int | None:
    if isinstance(source, str | os.PathLike):
        return os.stat(source).st_size
    try:
        return os.fstat(source.fileno()).st_size - source.tell()
    except (AttributeError, OSError, ValueError):
        return None


def checked_listing(result: DReturn) -> DReturn:
    """``result`` if it is an error or ``S_OK`` of a list of names; else an error saying what the server sent."""
    names = result.get("Value") if result["OK"] else []
    if isinstance(names, list) and all(isinstance(name, str) for name in names):
        return result
    return S_ERROR(
        f"the server answered the listing with {type(names).__name__} {str(names)[:80]!r}, not a list of member"
        " names; the service does not list bulks as this client expects"
    )
