"""``DataManagement/Dispatcher`` end to end: two TLS instances on one SQLite file, three workers, a failover.

Run it with ``.venv/bin/python examples/dispatcher/run_demo.py`` (``./demo`` does). It

1. makes dev credentials with ``DevCA``: a CA, a host certificate, and two users with proxies (``dev-user``, who
   owns the project, and ``bob``, who does not);
2. writes the configuration an operator would: two URLs for the service, the registry, an ``Authorization``
   section;
3. starts two instances of the service in this process, both on the same SQLite file, each with its own
   connection (as two processes on one host would be);
4. creates a project of 30 files through ``DispatcherClient``, and shows that ``bob`` may not touch it;
5. runs three workers (``worker.drain``) in parallel threads, each with its own client, as three grid jobs;
6. stops instance A while they work: the workers carry on through instance B;
7. prints the final ``project_status``, then starts a fresh instance on the same file to show nothing was lost.

It exits 0 when every step behaved as described.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, ClassVar

if __package__ in (None, ""):
    # Run as a script: make ``examples.dispatcher`` importable from the repository root.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from examples.dispatcher.client import DispatcherClient
from examples.dispatcher.handler import DispatcherHandler
from examples.dispatcher.worker import DrainReport, drain, simulate
from rpcframework import DReturn
from rpcframework.config import ConfigStore
from rpcframework.security.devca import DevCA, IssuedCredential
from rpcframework.server import Service, ServiceReactor

SERVICE = "DataManagement/Dispatcher"
WORKERS = ("worker-1", "worker-2", "worker-3")
#: Stop instance A once this many files are done: mid-way, with every worker busy.
STOP_A_AFTER_DONE = 10

CONFIG_TEMPLATE = """\
# What an operator writes: where the instances are, who the users are, and who may call what.
[DIRAC.Security]
CertFile = "{host_cert}"
KeyFile = "{host_key}"
CALocation = "{ca_dir}"

[Systems.DataManagement.URLs]
Dispatcher = ["{url_a}", "{url_b}"]

[Systems.DataManagement.Services.Dispatcher]
MaxThreads = 8

# Overrides the handler's auth_ rules: any registered user may call (the ownership rules still apply);
# creating needs NormalUser.
[Systems.DataManagement.Services.Dispatcher.Authorization]
create_project = ["NormalUser"]

[Registry]
DefaultGroup = "dm_users"

[Registry.Users.dev-user]
DN = "{user_dn}"

[Registry.Users.bob]
DN = "{bob_dn}"

[Registry.Groups.dm_users]
Users = ["dev-user", "bob"]
Properties = ["NormalUser"]

# Members of this group may change anyone's project (the handler checks the DispatcherAdmin property).
[Registry.Groups.dm_admins]
Users = []
Properties = ["DispatcherAdmin"]
"""


class DemoFailed(Exception):
    """A step did not behave as the demo says it does."""


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise DemoFailed(what)


def value_of(result: DReturn, what: str) -> Any:
    """The value of an ``S_OK``; an ``S_ERROR`` stops the demo."""
    if not result["OK"]:
        raise DemoFailed(f"{what} failed: {result['Message']}")
    return result["Value"]


class ObservedDispatcher(DispatcherHandler):
    """The example handler, counting the calls each instance serves, so the demo can show the failover."""

    served: ClassVar[collections.Counter[str]] = collections.Counter()
    served_lock: ClassVar[threading.Lock] = threading.Lock()

    def initialize(self) -> None:
        super().initialize()
        with self.served_lock:
            self.served[self.srv_getURL()] += 1


class PrintLog(logging.Handler):
    """Prints a library logger's records among the demo's lines (here: the clients' failover retries)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"   ({threading.current_thread().name}, client log) {record.getMessage()}")


def show_client_retries() -> None:
    logger = logging.getLogger("rpcframework.client.rpcclient")
    logger.setLevel(logging.INFO)
    logger.addHandler(PrintLog())
    logger.propagate = False


def free_ports(count: int) -> list[int]:
    """Ports free right now on 127.0.0.1 (held together, so they differ), for the configuration to name."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.create_server(("127.0.0.1", 0))) for _ in range(count)]
        return [sock.getsockname()[1] for sock in socks]


def project_files() -> list[str]:
    """30 files; three fail their first attempt, one fails every attempt (see ``worker.simulate``)."""
    files = [f"run-42/evts-{i:03d}.root" for i in range(1, 31)]
    for i in (4, 13, 22):
        files[i] = files[i].replace(".root", "-flaky.root")
    files[27] = files[27].replace(".root", "-corrupt.root")
    return files


@contextmanager
def instances(config: ConfigStore, ports: list[int], database: Path) -> Iterator[list[ServiceReactor]]:
    """One reactor per port, each with its own handler class (its own connection) on the same database file."""
    reactors: list[ServiceReactor] = []
    handlers: list[type[DispatcherHandler]] = []
    try:
        for port in ports:
            handlers.append(ObservedDispatcher.with_database(database))
            service = Service(SERVICE, handlers[-1], config=config, port=port)
            reactors.append(ServiceReactor([service], host="127.0.0.1").start())
        yield reactors
    finally:
        for reactor in reactors:
            reactor.stop(timeout=5)
        for handler in handlers:
            handler.close_store()


def create_project(client: DispatcherClient, bob: DispatcherClient) -> int:
    files = project_files()
    print(f"\n== a project of {len(files)} files: 3 flaky (fail once), 1 corrupt (fails every time), max_attempts=3")
    project_id = int(value_of(client.create_project("run-42", files, {"max_attempts": 3}), "create_project"))
    print(f"   dev-user: create_project('run-42', [30 files], {{'max_attempts': 3}})  -> S_OK {project_id}")
    for summary in value_of(client.list_projects(), "list_projects"):
        print(f"   list_projects(): project {summary['project_id']} {summary['name']!r} owner {summary['owner']}")
    refused = bob.next_file(project_id, "bob-1")
    expect(not refused["OK"] and refused.get("Errno") == 13, f"bob was not refused: {refused}")
    print(f"   bob: next_file({project_id}, 'bob-1')  -> S_ERROR {refused['Message']!r}")
    return project_id


def run_workers(
    config: ConfigStore, project_id: int, reactors: list[ServiceReactor]
) -> tuple[dict[str, DrainReport], int]:
    """Run the workers; stop instance A mid-way. Returns their reports and the calls A served before it stopped."""
    print(f"\n== {len(WORKERS)} workers drain project {project_id} in parallel (each its own DispatcherClient)")
    reports: dict[str, DrainReport] = {}
    errors: dict[str, BaseException] = {}

    def work(worker_id: str) -> None:
        try:
            with DispatcherClient(config=config, timeout=10) as client:
                reports[worker_id] = drain(client, project_id, worker_id, process=simulate(0.1), max_seconds=20)
        except BaseException as exc:  # reported by the main thread
            errors[worker_id] = exc

    threads = [threading.Thread(target=work, args=(w,), name=w, daemon=True) for w in WORKERS]
    for thread in threads:
        thread.start()
    with DispatcherClient(config=config, timeout=10) as watcher:
        served_by_a = stop_mid_way(watcher, project_id, reactors[0])
    for thread in threads:
        thread.join(timeout=25)
    expect(not errors, f"workers failed: {errors}")
    expect(len(reports) == len(WORKERS), "a worker did not finish in time")
    for worker_id, report in sorted(reports.items()):
        print(
            f"   {worker_id}: {len(report.done):2d} files done, failed attempts {len(report.failed)},"
            f" {report.retried_calls} calls asked again, finished={report.finished}"
        )
    return reports, served_by_a


def stop_mid_way(watcher: DispatcherClient, project_id: int, doomed: ServiceReactor) -> int:
    """Wait until a third of the files are done, then stop instance A while the workers keep calling."""
    for _ in range(500):  # at most ~10 s
        counts = value_of(watcher.project_status(project_id), "project_status")["counts"]
        if counts["done"] >= STOP_A_AFTER_DONE:
            break
        time.sleep(0.02)
    url = doomed.url(SERVICE)
    print(f"   {counts['done']} files done, {counts['reserved']} held: stopping instance A ({url}) ...")
    doomed.stop(timeout=5)  # lets the calls it is running finish, refuses new ones
    with ObservedDispatcher.served_lock:
        served = ObservedDispatcher.served[url]
    print(f"   instance A stopped after serving {served} calls; the workers go on through B")
    return served


def show_status(client: DispatcherClient, project_id: int, label: str) -> dict[str, Any]:
    status: dict[str, Any] = value_of(client.project_status(project_id), "project_status")
    counts = status["counts"]
    print(f"\n== {label}")
    print(f"   project {project_id} {status['name']!r} owner {status['owner']}: {status['total']} files")
    print(
        f"   ready {counts['ready']}, held {counts['reserved']}, done {counts['done']}, failed {counts['failed']};"
        f" finished={status['finished']}"
    )
    for failed in status["failed_files"]:
        print(f"   failed for good: {failed['name']} after {failed['attempts']} attempts")
    print(f"   files done per worker: {status['done_by_worker']}")
    return status


def check_final(
    status: dict[str, Any], reports: dict[str, DrainReport], reactors: list[ServiceReactor], served_by_a: int
) -> None:
    expect(
        status["finished"] and status["counts"] == {"ready": 0, "reserved": 0, "done": 29, "failed": 1},
        f"unexpected final counts {status['counts']}",
    )
    done = [name for report in reports.values() for name in report.done]
    expect(len(done) == len(set(done)) == 29, "a file was processed by two workers, or not at all")
    expect([f["name"] for f in status["failed_files"]] == ["run-42/evts-028-corrupt.root"], "wrong failed file")
    served_a, served_b = (ObservedDispatcher.served[r.url(SERVICE)] for r in reactors)
    print(f"   calls served: instance A {served_a} (all before it stopped), instance B {served_b}")
    expect(served_a == served_by_a and served_b > 0, "instance A served calls after it stopped, or B none")


def show_restart(config: ConfigStore, database: Path, project_id: int, before: dict[str, Any]) -> None:
    """A fresh instance on the same file (what a service restart is) sees the same project."""
    port = free_ports(1)[0]
    with instances(config, [port], database) as (fresh,), DispatcherClient(url=fresh.url(SERVICE), timeout=10) as c:
        after = show_status(c, project_id, f"restart: a new instance ({fresh.url(SERVICE)}) on the same database")
    expect(
        {k: after[k] for k in ("counts", "failed_files", "done_by_worker")}
        == {k: before[k] for k in ("counts", "failed_files", "done_by_worker")},
        "the restart lost state",
    )
    print("   same counts, same failed file, same per-worker totals: nothing lost")


def write_config(directory: Path, ca: DevCA, urls: list[str], bob: IssuedCredential) -> Path:
    host = ca.default_host()
    path = directory / "dispatcher.toml"
    path.write_text(
        CONFIG_TEMPLATE.format(
            host_cert=host.cert_file,
            host_key=host.key_file,
            ca_dir=ca.cert_dir,
            url_a=urls[0],
            url_b=urls[1],
            user_dn=ca.default_user().dn,
            bob_dn=bob.dn,
        )
    )
    return path


def run(directory: Path) -> None:
    print(f"\n== {SERVICE}: dev credentials in {directory}")
    ca = DevCA.init(directory / "dispatcher-devca")  # apart from the echo demo's, under a shared --dir
    user, bob = ca.default_user(), ca.issue_user("bob")
    print(f"   CA {ca.dn}\n   users {user.dn} and {bob.dn} (+ RFC 3820 proxies)")
    ports = free_ports(2)
    urls = [f"dips://127.0.0.1:{port}/{SERVICE}" for port in ports]
    config_file = write_config(directory, ca, urls, bob)
    database = directory / "dispatcher.sqlite"
    print(f"\n== configuration {config_file}: {SERVICE} at\n   A {urls[0]}\n   B {urls[1]}")
    print(f"   both instances share the database {database}")
    # What a grid job has in its environment; the clients find their proxy and the trusted CAs there.
    os.environ["X509_USER_PROXY"] = str(user.proxy_file)
    os.environ["X509_CERT_DIR"] = str(ca.cert_dir)
    config = ConfigStore([config_file])
    with (
        instances(config, ports, database) as reactors,
        DispatcherClient(config=config, timeout=10) as client,
        DispatcherClient(config=config, timeout=10, proxyLocation=str(bob.proxy_file)) as as_bob,
    ):
        project_id = create_project(client, as_bob)
        reports, served_by_a = run_workers(config, project_id, reactors)
        final = show_status(client, project_id, f"final project_status({project_id})")
        check_final(final, reports, reactors, served_by_a)
    show_restart(config, database, project_id, final)
    print("\nevery instance stopped; done.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dir", type=Path, help="where to write credentials, configuration and database")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    show_client_retries()  # "... failed ...; retrying": the failover, as it happens
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # interleave with logs, even in a pipe
    with tempfile.TemporaryDirectory(prefix="rpcframework-dispatcher-") as tmp:
        try:
            run(options.dir or Path(tmp))
        except DemoFailed as exc:
            print(f"\nDEMO FAILED: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
