"""Run the Dispatcher portal on your machine: dev CA, the ``DataManagement/Dispatcher`` service, the web portal.

``.venv/bin/python examples/portal/run_portal.py`` prints the portal's URL (http://127.0.0.1:PORT) and serves until
Ctrl-C; open it, sign in as ``alice`` or ``bob`` (dev mode), create projects, sign in as the other user. Every page
shows who the service saw: the user, with the portal's host acting for them.

``--once`` starts everything, walks through the portal over HTTP (alice creates a project and sees it, bob does not
see it and is refused it), prints what happened and exits: 0 when every step behaved as described.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import tempfile
from pathlib import Path

import uvicorn

if __package__ in (None, ""):
    # Run as a script: make ``examples.portal`` importable from the repository root.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from examples.portal.devenv import DevEnvironment, dev_environment
from examples.portal.server import PortalServer
from examples.portal.webclient import WebSession


class WalkthroughFailed(Exception):
    """A step of ``--once`` did not behave as described."""


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise WalkthroughFailed(what)


def walkthrough(base_url: str) -> None:
    """What ``--once`` does: alice and bob, each in their own browser session."""
    alice, bob = WebSession(base_url), WebSession(base_url)
    page = alice.sign_in("alice")
    expect(page.status == 200 and page.path == "/projects", f"alice's sign-in ended at {page.path} ({page.status})")
    expect('id="seen-username">alice<' in page.text, "the service did not see alice")
    print("   alice signed in; the service sees user alice (delegated by the portal's host)")
    page = alice.create_project("calibration-run", ["a.root", "b.root", "c.root"])
    expect(page.status == 200 and page.path.startswith("/projects/"), f"creating a project gave {page.status}")
    project_path = page.path
    print(f"   alice created 'calibration-run' -> {base_url}{project_path} (3 files, owner alice)")
    expect("calibration-run" in alice.get("/projects").text, "alice's list does not show her project")
    print("   alice's project list shows it")
    page = bob.sign_in("bob")
    expect('id="seen-username">bob<' in page.text, "the service did not see bob")
    expect("calibration-run" not in page.text, "bob's list shows alice's project")
    print("   bob signed in: his list does not show alice's project")
    page = bob.get(project_path)
    expect(page.status == 403, f"bob opening alice's project got {page.status}, not 403")
    print(f"   bob opening {project_path}: {page.status} (not one of his projects)")


def run_once(env: DevEnvironment) -> None:
    with PortalServer(env.portal_app()) as server:
        print(f"\n== portal at {server.url} (dev mode), service at {env.service_url}")
        walkthrough(server.url)
    print("\nportal and service stopped. done.")


def serve(env: DevEnvironment, port: int) -> None:
    sock = socket.create_server(("127.0.0.1", port))  # bound here, so the URL printed has the real port
    try:
        config = uvicorn.Config(env.portal_app(), log_level="info", timeout_graceful_shutdown=2)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
        print(f"\n== portal: open {url} (dev mode: sign in as alice or bob); Ctrl-C stops it")
        uvicorn.Server(config).run(sockets=[sock])  # main thread: uvicorn handles Ctrl-C and SIGTERM
    finally:
        sock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dir", type=Path, help="where to write credentials and the database (default: temporary)")
    parser.add_argument("--port", type=int, default=0, help="portal port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--once", action="store_true", help="walk through the portal over HTTP, then exit")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    with tempfile.TemporaryDirectory(prefix="rpcframework-portal-") as tmp:
        directory = options.dir or Path(tmp)
        print(f"== dev credentials and database in {directory}")
        with dev_environment(directory) as env:
            for user in env.users.values():
                print(f"   user {user.name}: {user.dn} (group {user.group})")
            print(f"   portal host {env.portal_host.dn} (TrustedHost)")
            try:
                run_once(env) if options.once else serve(env, options.port)
            except WalkthroughFailed as exc:
                print(f"\nPORTAL WALKTHROUGH FAILED: {exc}", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
