"""The multi-host test bed from Python: hosts as network namespaces, services in them, real faults.

:class:`TestBed` drives ``scripts/netns-testbed.sh`` (one implementation for manual runs and tests): three service
hosts ``h1``-``h3`` (10.77.0.11-13) and a client host ``c`` (10.77.0.100) on a bridge of their own; no interface,
address or route is added to the machine's own namespace, so no packet leaves the bed. It needs root.

Faults are real: :meth:`Instance.kill` (SIGKILL: the kernel resets the instance's connections),
:meth:`TestBed.link` (the host's link set down inside its namespace: its packets vanish, nobody answers, not even
with a reset), :meth:`TestBed.slow` (a 256 kbit/s link), :meth:`Instance.terminate` (SIGTERM: a graceful drain).

Certificates come from a dev CA made at test time; each host gets its names and address as SANs
(``h1``, ``10.77.0.11``, and ``svc``, the name that resolves to every service host inside the client host).
Clients run inside ``c`` as subprocesses (:meth:`TestBed.client_argv`), typically ``python -m
benchmarks.hosts_load``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rpcframework.security.devca import DevCA

__all__ = ["HOSTS", "Instance", "TestBed", "remove_stale_beds", "unavailable_reason"]

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "netns-testbed.sh"
HOSTS = ("h1", "h2", "h3")
ADDRESSES = {"h1": "10.77.0.11", "h2": "10.77.0.12", "h3": "10.77.0.13", "c": "10.77.0.100"}
SERVICE = "Bed/Where"
PORT = 9135
#: How long a started instance may take to print its URL.
START_TIMEOUT = 30.0
_COMMAND_TIMEOUT = 30.0
_SITE_CFG = """\
Registry
{{
  DefaultGroup = users
  Users
  {{
    dev-user
    {{
      DN = {user_dn}
    }}
  }}
  Groups
  {{
    users
    {{
      Users = dev-user
      Properties = NormalUser
    }}
  }}
}}
"""


def unavailable_reason() -> str | None:
    """Why the test bed cannot run here (``None`` when it can): not root, no ``ip``, or ``ip netns`` refused."""
    if os.geteuid() != 0:
        return "the multi-host test bed needs root (network namespaces); run the suite as root to include it"
    if shutil.which("ip") is None:
        return "the multi-host test bed needs the 'ip' command (iproute2)"
    probe = f"rpcfprobe{os.getpid()}"
    try:
        made = subprocess.run(["ip", "netns", "add", probe], check=False, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"'ip netns add' cannot run here: {exc}"
    if made.returncode != 0:
        return f"'ip netns add' failed here (a container without CAP_SYS_ADMIN?): {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=10, check=False)
    return None


def remove_stale_beds() -> list[str]:
    """Remove the beds of test runs that died without tearing theirs down (``rpcf<PID>-*`` whose PID is gone).
    Beds of live processes (another engineer's run) are left alone. Returns the prefixes removed."""
    listing = _run(["ip", "netns", "list"])
    stale = set()
    for line in listing.splitlines():
        match = re.fullmatch(r"rpcf(\d+)-(?:sw|h1|h2|h3|c)(?: \(id: \d+\))?", line.strip())
        if match and not _alive(int(match.group(1))):
            stale.add(f"rpcf{match.group(1)}")
    for prefix in sorted(stale):
        _run([str(SCRIPT), "down", prefix])
    return sorted(stale)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _run(argv: Sequence[str], *, timeout: float = _COMMAND_TIMEOUT) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


@dataclass
class Instance:
    """One ``rpcframework serve`` process inside a host's namespace."""

    host: str
    port: int
    process: subprocess.Popen[str]
    url: str = ""
    log: Path | None = None
    metrics_url: str = ""

    def signal(self, signum: int) -> None:
        if self.process.poll() is None:
            # `ip netns exec` execs the command: the process we started is the server itself.
            os.kill(self.process.pid, signum)

    def kill(self) -> None:
        """SIGKILL: the instance dies at once and the kernel resets its connections."""
        self.signal(signal.SIGKILL)
        self.wait(10.0)

    def terminate(self) -> None:
        """SIGTERM: stop accepting, finish running calls, close idle connections, exit (a graceful drain)."""
        self.signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int | None:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    @property
    def running(self) -> bool:
        return self.process.poll() is None


@dataclass
class TestBed:
    """A test bed named ``prefix`` (unique per concurrent run); use as a context manager, torn down on exit."""

    __test__ = False  # not a pytest test class, whatever its name

    workdir: Path
    prefix: str = field(default_factory=lambda: f"rpcf{os.getpid()}")
    instances: list[Instance] = field(default_factory=list)
    ca: DevCA | None = None

    @property
    def config_file(self) -> Path:
        """The site configuration every process in the bed reads (the registry: the dev user may call)."""
        return self.workdir / "site.cfg"

    # -- namespaces -------------------------------------------------------------------------------------------

    def __enter__(self) -> TestBed:
        self.up()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.down()

    def up(self) -> None:
        """Make the namespaces, the dev CA (kept in ``workdir`` and reused) and the site configuration."""
        try:
            _run([str(SCRIPT), "up", self.prefix])
            self._credentials()
        except BaseException:
            self.down()
            raise

    def _credentials(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.ca is None and (self.workdir / "ca").exists():
            self.ca = DevCA.load(self.workdir / "ca")
        elif self.ca is None:
            self.ca = DevCA.init(self.workdir / "ca", key_type="ec")
            for host in HOSTS:
                self.ca.issue_host(host, sans=[f"DNS:{host}", f"IP:{ADDRESSES[host]}", "DNS:svc"])
        self.config_file.write_text(_SITE_CFG.format(user_dn=self.dev_ca.default_user().dn))

    def down(self) -> None:
        """Stop every instance (SIGKILL after a short grace) and remove the namespaces; never raises."""
        for instance in self.instances:
            with contextlib.suppress(OSError):
                instance.signal(signal.SIGKILL)
            instance.wait(5.0)
        with contextlib.suppress(Exception):
            _run([str(SCRIPT), "down", self.prefix])

    def reset(self) -> None:
        """Back to a quiet bed between tests: every instance killed, every link up and fast."""
        for instance in self.instances:
            with contextlib.suppress(OSError):
                instance.signal(signal.SIGKILL)
            instance.wait(5.0)
        self.instances.clear()
        for host in HOSTS:
            self.link(host, up=True)
            self.slow(host, slow=False)
        self.resolve("svc", HOSTS)

    def namespace(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    def exec_argv(self, host: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespace(host)]

    def link(self, host: str, up: bool) -> None:
        """Set ``host``'s link up or down inside its namespace (down: its packets vanish)."""
        _run([str(SCRIPT), "link", host, "up" if up else "down", self.prefix])

    def slow(self, host: str, slow: bool) -> None:
        """Give ``host`` a 256 kbit/s link (tc tbf), or its normal link back."""
        _run([str(SCRIPT), "slow" if slow else "fast", host, self.prefix])

    def resolve(self, name: str, hosts: Sequence[str]) -> None:
        """Make ``name`` resolve to the addresses of ``hosts`` inside the client host (its /etc/hosts, rewritten in
        place: ``ip netns exec`` bind-mounts /etc/netns/<namespace>/hosts over /etc/hosts)."""
        path = Path("/etc/netns") / self.namespace("c") / "hosts"
        kept = [line for line in path.read_text().splitlines() if line.split()[1:] != [name]]
        lines = [*kept, *(f"{ADDRESSES[host]} {name}" for host in hosts)]
        with path.open("r+") as handle:  # the same file (inode): the bind mount sees the change
            handle.write("\n".join(lines) + "\n")
            handle.truncate()

    # -- credentials ----------------------------------------------------------------------------------------

    @property
    def dev_ca(self) -> DevCA:
        if self.ca is None:
            raise RuntimeError("the test bed is not up")
        return self.ca

    def environment(self, **extra: str) -> dict[str, str]:
        """The environment of processes in the bed: this checkout first on the path, the dev CA trusted."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
        env["X509_CERT_DIR"] = str(self.dev_ca.cert_dir)
        env["X509_USER_PROXY"] = str(self.dev_ca.directory / "proxy.pem")
        env["RPCFRAMEWORK_CONFIG"] = str(self.config_file)
        env.update(extra)
        return env

    # -- services -------------------------------------------------------------------------------------------

    def start(self, host: str, *, port: int = PORT, args: Sequence[str] = (), wait: bool = True) -> Instance:
        """Start ``rpcframework serve`` for ``Bed/Where`` on ``host``:``port`` (its own address)."""
        ca = self.dev_ca
        cert_dir = ca.directory / "hosts" / host
        log = self.workdir / f"{host}-{port}-{len(self.instances)}.log"
        argv = [
            *self.exec_argv(host),
            sys.executable,
            "-m",
            "rpcframework.cli.main",
            "--log-level",
            "WARNING",  # INFO logs every call: on a machine shared by every host that slows them all
            "serve",
            "benchmarks.netns_service:WhereHandler",
            "--name",
            SERVICE,
            "--host",
            ADDRESSES[host],
            "--port",
            str(port),
            "--cert",
            str(cert_dir / "hostcert.pem"),
            "--key",
            str(cert_dir / "hostkey.pem"),
            "--ca-dir",
            str(ca.cert_dir),
            *args,
        ]
        with log.open("w") as err:
            process = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=err, text=True, cwd=ROOT, env=self.environment(RPCF_BED_HOST=host)
            )
        instance = Instance(host, port, process, log=log)
        self.instances.append(instance)
        if wait:
            self.wait_ready(instance)
        return instance

    def wait_ready(self, instance: Instance) -> None:
        """Read the instance's URL (and metrics address) from its stdout; raise with its log if it died."""
        stdout = instance.process.stdout
        assert stdout is not None
        end = time.monotonic() + START_TIMEOUT
        with _stdout_deadline(instance, end):
            for _ in range(4):
                line = stdout.readline().strip()
                if not line:
                    break
                if line.startswith("metrics: "):
                    instance.metrics_url = line.removeprefix("metrics: ")
                else:
                    instance.url = line
                if instance.url and (instance.metrics_url or "--metrics-address" not in instance.process.args):
                    return
        log = instance.log.read_text() if instance.log else ""
        raise RuntimeError(f"instance on {instance.host} did not start:\n{log[-3000:]}")

    def url(self, host: str, port: int = PORT) -> str:
        return f"dips://{host}:{port}/{SERVICE}"

    # -- clients ---------------------------------------------------------------------------------------------

    def client_argv(self, *argv: str) -> list[str]:
        """``argv`` run with this interpreter inside the client host ``c``, at a lower CPU priority: every host of
        the bed shares this machine's cores, and a busy client must not starve an instance that starts."""
        return [*self.exec_argv("c"), "nice", "-n", "10", sys.executable, *argv]

    def run_client(self, *argv: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.client_argv(*argv),
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
            env=self.environment(),
        )

    def popen_client(self, *argv: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.client_argv(*argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=self.environment(),
        )


@contextlib.contextmanager
def _stdout_deadline(instance: Instance, end: float) -> Iterator[None]:
    """Kill the instance if its stdout says nothing before ``end`` (readline would otherwise block forever)."""
    import threading

    done = threading.Event()

    def watchdog() -> None:
        if not done.wait(max(end - time.monotonic(), 0.0)):
            with contextlib.suppress(OSError):
                instance.signal(signal.SIGKILL)

    thread = threading.Thread(target=watchdog, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(1.0)
