"""``Demo/Echo`` end to end: two TLS instances on loopback, real calls through ``EchoClient``, failover.

Run it with ``.venv/bin/python examples/echo/run_demo.py`` (``./demo`` does). It

1. makes dev credentials (a CA, a host certificate, a user certificate and its RFC 3820 proxy) with ``DevCA``;
2. writes the configuration an operator would: two URLs for ``Demo/Echo``, the registry (the dev user in group
   ``demo_users`` with the ``NormalUser`` property) and an ``Authorization`` section;
3. starts two instances of the service (``Service`` + ``ServiceReactor``, pyOpenSSL, ``dips://``) in this process;
4. points ``X509_USER_PROXY`` and ``X509_CERT_DIR`` at the dev proxy and CA, as a grid job has them, and calls
   through ``EchoClient``: who the server saw, results and timings, a keyword argument, a wrong type, a refused
   call (deny by default), a deadline;
5. stops one instance in the middle of the run and shows the calls going on through the other one.

Everything it prints comes from public API. It exits 0 when every step behaved as described.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a script: make ``examples.echo`` importable from the repository root.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from examples.echo.client import EchoClient
from examples.echo.service import EchoHandler
from rpcframework import DReturn
from rpcframework.config import ConfigStore
from rpcframework.returnvalues import DErrorReturn
from rpcframework.security.devca import DevCA
from rpcframework.server import Service, ServiceReactor

SERVICE = "Demo/Echo"

CONFIG_TEMPLATE = """\
# What an operator writes: where the instances are, who the users are, and who may call what.
[DIRAC.Security]
CertFile = "{host_cert}"
KeyFile = "{host_key}"
CALocation = "{ca_dir}"

[Systems.Demo.URLs]
Echo = ["{url_a}", "{url_b}"]

[Systems.Demo.Services.Echo]
MaxThreads = 8

# Overrides the handler's auth_ rules. reset has a rule nowhere, so every call to it is refused.
[Systems.Demo.Services.Echo.Authorization]
add = ["NormalUser"]
greet = ["group:demo_users"]

[Registry]
DefaultGroup = "demo_users"

[Registry.Users.dev-user]
DN = "{user_dn}"

[Registry.Groups.demo_users]
Users = ["dev-user"]
Properties = ["NormalUser"]
"""


class DemoFailed(Exception):
    """A step did not behave as the demo says it does."""


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise DemoFailed(what)


def free_ports(count: int) -> list[int]:
    """Ports free right now on 127.0.0.1 (held together, so they differ), for the configuration to name."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.create_server(("127.0.0.1", 0))) for _ in range(count)]
        return [sock.getsockname()[1] for sock in socks]


def write_config(directory: Path, ca: DevCA, urls: list[str]) -> Path:
    host, user = ca.default_host(), ca.default_user()
    path = directory / "demo.toml"
    path.write_text(
        CONFIG_TEMPLATE.format(
            host_cert=host.cert_file,
            host_key=host.key_file,
            ca_dir=ca.cert_dir,
            url_a=urls[0],
            url_b=urls[1],
            user_dn=user.dn,
        )
    )
    return path


@contextmanager
def echo_instances(config: ConfigStore, ports: list[int]) -> Iterator[list[ServiceReactor]]:
    """Start one ``ServiceReactor`` per port, each serving ``Demo/Echo``; stop them all at the end.

    Both instances read the same ``Services/Echo`` section; only the port differs, so it is passed here.
    """
    reactors: list[ServiceReactor] = []
    try:
        for port in ports:
            service = Service(SERVICE, EchoHandler, config=config, port=port)
            reactors.append(ServiceReactor([service], host="127.0.0.1").start())
        yield reactors
    finally:
        for reactor in reactors:
            reactor.stop(timeout=5)


def timed(call: Callable[[], DReturn]) -> tuple[DReturn, float]:
    started = time.perf_counter()
    result = call()
    return result, (time.perf_counter() - started) * 1000


def show(label: str, result: DReturn, ms: float) -> None:
    if result["OK"]:
        print(f"   {label:<34} {ms:7.1f} ms  S_OK {result['Value']!r}")
        return
    print(f"   {label:<34} {ms:7.1f} ms  S_ERROR {result['Message']!r}")


def value_of(result: DReturn, what: str) -> Any:
    """The value of an ``S_OK``; an ``S_ERROR`` stops the demo."""
    if not result["OK"]:
        raise DemoFailed(f"{what} failed: {result['Message']}")
    return result["Value"]


def error_of(result: DReturn, what: str) -> DErrorReturn:
    """The ``S_ERROR`` a call should have returned; success stops the demo."""
    if result["OK"]:
        raise DemoFailed(f"{what} succeeded but should have been refused")
    return result


class PrintLog(logging.Handler):
    """Prints a library logger's records among the demo's lines (the client's retries, the server's refusals)."""

    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label

    def emit(self, record: logging.LogRecord) -> None:
        print(f"   ({self.label} log) {record.getMessage()}")


def show_logs(name: str, label: str, level: int) -> None:
    logger = logging.getLogger(name)
    logger.setLevel(level)
    logger.addHandler(PrintLog(label))
    logger.propagate = False


def show_identity(client: EchoClient) -> None:
    print("\n== who the server sees")
    result, ms = timed(client.whoami)
    me = value_of(result, "whoami")
    print(f"   whoami ({ms:.1f} ms, includes TCP connect and TLS handshake)")
    print(f"   DN {me['DN']}  proxy={me['isProxy']}")
    print(f"   user {me['username']} in group {me['group']} with properties {list(me['properties'])}")
    expect(me["username"] == "dev-user" and "NormalUser" in me["properties"], "the registry did not map the proxy")


def show_calls(client: EchoClient) -> None:
    print("\n== calls (S_OK / S_ERROR envelopes, as DIRAC returns them)")
    calls: list[tuple[str, Callable[[], DReturn]]] = [
        ("echo({'n': [1, 2, 3]})", lambda: client.echo({"n": [1, 2, 3]})),
        ("add(2, 3)", lambda: client.add(2, 3)),
        ("greet('Ada', greeting='Bonjour')", lambda: client.greet("Ada", greeting="Bonjour")),
        ("ping()", client.ping),
    ]
    for label, call in calls:
        result, ms = timed(call)
        if label == "ping()":  # ping's answer is long (uptimes, load, cpu times): show its name only
            result = {"OK": True, "Value": {"name": value_of(result, label)["name"], "...": "..."}}
        show(label, result, ms)
        value_of(result, label)
    expect(value_of(client.add(2, 3), "add") == 5, "add(2, 3) is not 5")


def show_refusals(client: EchoClient) -> None:
    print("\n== what callers are told when something is wrong")
    # executeRPC bypasses the typed wrapper, as a careless caller would: the service checks types_add.
    wrong, ms = timed(lambda: client.executeRPC("add", "2", 3))
    show("add('2', 3)  wrong type", wrong, ms)
    expect("Type mismatch" in error_of(wrong, "add('2', 3)")["Message"], "a wrong type was not refused")
    refused, ms = timed(client.reset)
    show("reset()  no rule: deny by default", refused, ms)
    expect(error_of(refused, "reset()").get("Errno") == 1111, "reset() was not refused with Errno 1111")
    late, ms = timed(lambda: client.slow(5, timeout=1))
    show("slow(5, timeout=1)  deadline", late, ms)
    expect(error_of(late, "slow(5)").get("Errno") == errno.ETIMEDOUT and ms < 3000, "the deadline did not hold")


def served_by(client: EchoClient, names: dict[str, str], label: str) -> str:
    result, ms = timed(client.served_by)
    url = str(value_of(result, "served_by")["url"])
    name = names.get(url, url)
    print(f"   {label:<34} {ms:7.1f} ms  served by {name}")
    return name


def show_failover(client: EchoClient, reactors: list[ServiceReactor], names: dict[str, str]) -> None:
    print("\n== two instances: the client spreads calls, then survives losing one")
    for i in range(4):
        served_by(client, names, f"call {i + 1}")
    doomed = reactors[0]
    url = doomed.url(SERVICE)
    box: dict[str, DReturn] = {}
    # url= sends this one call to instance A, whatever the client would have picked.
    in_flight = threading.Thread(target=lambda: box.update(result=client.slow(0.5, url=url)), daemon=True)
    before = EchoHandler.calls_served
    in_flight.start()
    for _ in range(250):  # at most 5 s: wait until the handler runs the slow call (same process, so we can see)
        if EchoHandler.calls_served > before:
            break
        time.sleep(0.02)
    print(f"   stopping instance A ({url}) while slow(0.5) runs on it ...")
    doomed.stop(timeout=5)
    in_flight.join(timeout=5)
    expect("result" in box, "the in-flight call did not end")
    value_of(box["result"], "the in-flight slow(0.5) on the stopped instance")
    print("   instance A stopped; its in-flight slow(0.5) finished first: S_OK")
    seen = {served_by(client, names, f"call {i + 5}") for i in range(6)}
    expect(seen == {"instance B"}, f"calls after the stop were served by {seen}")


def run(directory: Path) -> None:
    print(f"\n== Demo/Echo: dev credentials in {directory}")
    ca = DevCA.init(directory / "devca")
    user = ca.default_user()
    print(f"   CA {ca.dn}\n   host {ca.default_host().dn}\n   user {user.dn} (+ RFC 3820 proxy)")
    ports = free_ports(2)
    urls = [f"dips://127.0.0.1:{port}/{SERVICE}" for port in ports]
    config_file = write_config(directory, ca, urls)
    print(f"\n== configuration {config_file}: {SERVICE} at\n   A {urls[0]}\n   B {urls[1]}")
    # What a grid job has in its environment; the client finds its proxy and the trusted CAs there.
    os.environ["X509_USER_PROXY"] = str(user.proxy_file)
    os.environ["X509_CERT_DIR"] = str(ca.cert_dir)
    config = ConfigStore([config_file])
    with echo_instances(config, ports) as reactors:
        names = {reactor.url(SERVICE): f"instance {letter}" for reactor, letter in zip(reactors, "AB", strict=True)}
        print(f"   both instances listening (initializeHandler ran: calls_served={EchoHandler.calls_served})")
        with EchoClient(config=config, timeout=10) as client:
            show_identity(client)
            show_calls(client)
            show_refusals(client)
            show_failover(client, reactors, names)
    print(f"\n{EchoHandler.calls_served} calls ran in the handler; both instances stopped. done.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dir", type=Path, help="where to write credentials and configuration (default: temporary)")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # interleave with logs, even in a pipe
    show_logs("rpcframework.client.rpcclient", "client", logging.INFO)  # "... failed ...; retrying"
    show_logs("rpcframework.server.service", "server", logging.WARNING)  # refusals, as the operator sees them
    with tempfile.TemporaryDirectory(prefix="rpcframework-demo-") as tmp:
        try:
            run(options.dir or Path(tmp))
        except DemoFailed as exc:
            print(f"\nDEMO FAILED: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
