"""A worker that drains a dispatcher project: next file, process it, report it; until nothing is left.

As a library (``run_demo.py`` runs three of these in threads)::

    report = drain(DispatcherClient(), project_id, "worker-1")

As a script, with the credentials of a grid job (``X509_USER_PROXY``, ``X509_CERT_DIR``) and the configuration
that names the service's URLs::

    python examples/dispatcher/worker.py --config dispatcher.toml --project 1 --worker worker-1

The "processing" is simulated (:func:`simulate`): it takes ``work_seconds``, fails the first attempt at a file
whose name contains ``flaky`` and every attempt at a ``corrupt`` one, so a run shows retries and a file that fails
for good. Pass your own ``process`` function to do real work.

The loop is bounded (``max_rounds`` questions to the service, ``max_seconds`` in all). A call that fails on the
way (an instance went away between sending and answering) is asked again: the service answers a repeated
``next_file`` with the file the worker already holds, and a repeated ``file_done`` as the first one.
"""

from __future__ import annotations

import argparse
import errno
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a script: make ``examples.dispatcher`` importable from the repository root.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from examples.dispatcher.client import DispatcherClient
from rpcframework import DReturn

#: Failures of the call itself, worth asking again; the service's own refusals (wrong owner, unknown project,
#: a file not held) are final.
#: A deadline (ETIMEDOUT) is retryable too: each method answers a repeat from the same worker as the first call.
RETRYABLE_ERRNOS = frozenset(
    {errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE, errno.ETIMEDOUT, 1601}
)
CALL_ATTEMPTS = 3
RETRY_PAUSE_SECONDS = 0.2

Processor = Callable[[dict[str, Any]], bool]


class WorkerError(Exception):
    """A call failed for good; the worker stops."""


@dataclass
class DrainReport:
    """What one worker did."""

    worker_id: str
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # one entry per failed attempt
    retried_calls: int = 0
    finished: bool = False  # the project had nothing left when the worker stopped


def simulate(work_seconds: float = 0.05) -> Processor:
    """A stand-in for real work: sleeps, fails ``flaky`` files once and ``corrupt`` files always."""

    def process(file: dict[str, Any]) -> bool:
        time.sleep(work_seconds)
        name = str(file["name"])
        return not ("corrupt" in name or ("flaky" in name and file["attempt"] == 1))

    return process


def _call(report: DrainReport, what: str, call: Callable[[], DReturn]) -> Any:
    """The value of ``call()``, asking again after a failure of the call itself."""
    for attempt in range(1, CALL_ATTEMPTS + 1):
        result = call()
        if result["OK"]:
            return result["Value"]
        if result.get("Errno") not in RETRYABLE_ERRNOS or attempt == CALL_ATTEMPTS:
            raise WorkerError(f"{report.worker_id}: {what} failed: {result['Message']}")
        report.retried_calls += 1
        time.sleep(RETRY_PAUSE_SECONDS)
    raise AssertionError("unreachable")


def drain(
    client: DispatcherClient,
    project_id: int,
    worker_id: str,
    *,
    process: Processor | None = None,
    max_rounds: int = 10_000,
    max_seconds: float = 60.0,
    poll_seconds: float = 0.05,
) -> DrainReport:
    """Process files of ``project_id`` until the project is finished, or a bound is reached.

    Raises :class:`WorkerError` when the service refuses a call (the report so far is on the exception's
    ``report`` attribute).
    """
    process = process or simulate()
    report = DrainReport(worker_id)
    deadline = time.monotonic() + max_seconds
    try:
        for _ in range(max_rounds):
            if time.monotonic() > deadline:
                break
            file = _call(report, "next_file", lambda: client.next_file(project_id, worker_id))
            if file is None:
                status = _call(report, "project_status", lambda: client.project_status(project_id))
                if status["finished"]:
                    report.finished = True
                    break
                # Nothing ready, but other workers hold files that may come back (a failure, an expired lease).
                time.sleep(poll_seconds)
                continue
            _process_and_report(client, report, project_id, file, process)
    except WorkerError as exc:
        exc.report = report  # type: ignore[attr-defined]
        raise
    return report


def _process_and_report(
    client: DispatcherClient, report: DrainReport, project_id: int, file: dict[str, Any], process: Processor
) -> None:
    file_id, worker_id = int(file["file_id"]), report.worker_id
    if process(file):
        _call(report, f"file_done({file_id})", lambda: client.file_done(project_id, file_id, worker_id))
        report.done.append(file["name"])
    else:
        _call(report, f"file_failed({file_id})", lambda: client.file_failed(project_id, file_id, worker_id))
        report.failed.append(file["name"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Drain a DataManagement/Dispatcher project.")
    parser.add_argument("--project", type=int, required=True, help="the project id")
    parser.add_argument("--worker", required=True, help="this worker's id (unique among the project's workers)")
    parser.add_argument("--config", type=Path, action="append", default=[], help="configuration file (.toml/.cfg)")
    parser.add_argument("--url", help="the service URL(s), instead of the configuration's")
    parser.add_argument("--work-seconds", type=float, default=0.05, help="simulated work per file")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="stop after this long in any case")
    options = parser.parse_args(argv)
    from rpcframework.config import ConfigStore

    config = ConfigStore(options.config) if options.config else None
    with DispatcherClient(url=options.url, config=config, timeout=10) as client:
        try:
            report = drain(
                client,
                options.project,
                options.worker,
                process=simulate(options.work_seconds),
                max_seconds=options.max_seconds,
            )
        except WorkerError as exc:
            print(exc, file=sys.stderr)
            return 1
    print(
        f"{report.worker_id}: {len(report.done)} done, {len(report.failed)} failed attempts, finished={report.finished}"
    )
    return 0 if report.finished else 1


if __name__ == "__main__":
    sys.exit(main())
