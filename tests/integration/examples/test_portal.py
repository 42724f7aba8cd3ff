"""The portal example end to end: real HTTP to uvicorn on 127.0.0.1, the portal calling the Dispatcher service over
dips:// on behalf of the signed-in user, and a headless Chromium page load of what a person sees.

One dev environment (CA, users, hosts, the Dispatcher service with its SQLite file) serves the whole module; every
test uses project names of its own.
"""

from __future__ import annotations

import copy
import errno
import os
import re
import shutil
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from support.processes import run_example

import rpcframework
from examples.portal.devenv import DevEnvironment, dev_environment
from examples.portal.server import PortalServer
from examples.portal.sessions import COOKIE_NAME, SignedCookieSessionMiddleware
from examples.portal.webclient import WebSession

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevEnvironment]:
    with dev_environment(tmp_path_factory.mktemp("portal")) as environment:
        yield environment


@pytest.fixture(scope="module")
def portal(env: DevEnvironment) -> Iterator[str]:
    """The portal (host certificate with TrustedHost, dev mode) on a free loopback port; its base URL."""
    with PortalServer(env.portal_app()) as server:
        yield server.url


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def project_id_of(path: str) -> int:
    match = re.fullmatch(r"/projects/(\d+)", path)
    assert match, path
    return int(match.group(1))


def seen_identity(text: str) -> dict[str, str]:
    """The service-side identity the page shows (``_identity.html``)."""
    found = dict(re.findall(r'id="seen-([a-z-]+)">([^<]*)<', text))
    assert found, text
    return found


# -- what users see and may do ----------------------------------------------------------------------------------


def test_alice_creates_a_project_and_her_list_shows_it(portal: str, env: DevEnvironment) -> None:
    alice = WebSession(portal)
    page = alice.sign_in("alice")
    assert (page.status, page.path) == (200, "/projects")
    assert "Signed in as <strong>alice</strong>" in page.text
    name = unique("calibration")
    page = alice.create_project(name, ["a.root", "b.root", "c.root"])
    assert page.status == 200, page.text
    project_id = project_id_of(page.path)
    assert f'<h1 id="project-name">{name}</h1>' in page.text
    assert '<strong id="project-owner">alice</strong>' in page.text and "3 files" in page.text
    listing = alice.get("/projects")
    assert listing.status == 200
    assert f'<a href="/projects/{project_id}">{name}</a>' in listing.text


def test_bob_does_not_see_alices_project_and_is_refused_it(portal: str) -> None:
    alice, bob = WebSession(portal), WebSession(portal)
    alice.sign_in("alice")
    name = unique("alice-only")
    project_path = alice.create_project(name, ["x.root"]).path
    page = bob.sign_in("bob")
    assert page.status == 200 and "Signed in as <strong>bob</strong>" in page.text
    assert name not in page.text and project_path not in page.text
    refused = bob.get(project_path)
    assert refused.status == 403, refused.text
    assert f"project {project_id_of(project_path)} is not one of your projects" in refused.text
    assert name not in refused.text  # nothing of the project leaks into the refusal
    missing = bob.get("/projects/999999")
    assert missing.status == 404 and "unknown project 999999" in missing.text
    assert alice.get(project_path).status == 200  # still hers


def test_the_service_sees_the_user_not_the_portal(portal: str, env: DevEnvironment) -> None:
    alice = WebSession(portal)
    page = alice.sign_in("alice")
    seen = seen_identity(page.text)
    assert seen["username"] == "alice" and seen["group"] == "dispatcher_users"
    assert seen["dn"] == env.users["alice"].dn
    assert seen["delegated-from"] == env.portal_host.dn  # the portal's host spoke for her
    name = unique("owned")
    alice.create_project(name, ["f.root"])
    # Asked directly with the portal's own certificate: as itself the host has no projects and may not list
    # alice's; acting for alice (outside the web app), the service lists hers, recorded with her as the owner.
    with env.client() as client:
        assert client.whoami()["Value"]["username"] == "portal"  # the host, as itself
        assert name not in [p["name"] for p in client.list_projects()["Value"]]
        assert client.list_projects("alice")["Errno"] == errno.EACCES
        with rpcframework.delegate(dn=env.users["alice"].dn, group=env.users["alice"].group):
            projects = client.list_projects()["Value"]
    assert [p["owner"] for p in projects if p["name"] == name] == ["alice"]


def test_create_form_shows_the_services_refusal(portal: str) -> None:
    alice = WebSession(portal)
    alice.sign_in("alice")
    page = alice.create_project(unique("empty"), [])
    assert page.status == 400 and page.path == "/projects"
    assert "files must be a non-empty list of file names" in page.text


def test_portal_without_trusted_host_gets_a_clear_refusal(env: DevEnvironment) -> None:
    with env.client(trusted=False) as client, PortalServer(env.portal_app(trusted=False)) as server:
        alice = WebSession(server.url)
        page = alice.sign_in("alice")
        assert page.status == 502 and page.path == "/projects"
        assert "The Dispatcher service refused to let this portal act for you" in page.text
        assert f"{env.untrusted_host.dn} is not a host with the TrustedHost property" in page.text
        name = unique("never")
        created = alice.post("/projects", {"csrf": page.csrf(), "name": name, "files": "a.root"})
        assert created.status == 502 and "delegation refused" in created.text
        assert client.whoami()["Value"]["username"] == "untrusted-portal"  # as itself, it may still call
    with env.client() as trusted, rpcframework.delegate(dn=env.users["alice"].dn, group=env.users["alice"].group):
        assert name not in [p["name"] for p in trusted.list_projects()["Value"]]  # nothing was created for her


def test_concurrent_users_never_see_each_others_identity(portal: str) -> None:
    # One shared client, many requests at once: the delegation is per request (a ContextVar), never mixed up.
    sessions = {name: WebSession(portal) for name in ("alice", "bob")}
    for name, session in sessions.items():
        session.sign_in(name)

    def load(name: str) -> str:
        return seen_identity(sessions[name].get("/projects").text)["username"]

    names = ["alice", "bob"] * 12
    with ThreadPoolExecutor(max_workers=8) as pool:
        seen = list(pool.map(load, names))
    assert seen == names


def test_200_concurrent_page_loads_start_no_thread_in_the_portal(portal: str) -> None:
    # The portal awaits its RPCs on uvicorn's event loop (AsyncClient): no thread per call in flight, so a burst
    # of page loads leaves the process with the threads it had (a thread pool would have grown by its workers).
    sessions = {name: WebSession(portal) for name in ("alice", "bob")}
    for name, session in sessions.items():
        session.sign_in(name)
    before = {thread.ident for thread in threading.enumerate()}
    grown: set[str] = set()

    def load(name: str) -> str:
        page = sessions[name].get("/projects")
        grown.update(
            thread.name
            for thread in threading.enumerate()
            if thread.ident not in before and not thread.name.startswith("page-load")
        )
        return seen_identity(page.text)["username"]

    names = ["alice", "bob"] * 100
    with ThreadPoolExecutor(max_workers=200, thread_name_prefix="page-load") as pool:
        seen = list(pool.map(load, names))
    assert seen == names
    assert grown == set(), grown


# -- sessions, forms and dev mode -------------------------------------------------------------------------------


def test_signed_out_pages_send_people_to_sign_in(portal: str) -> None:
    anonymous = WebSession(portal)
    for path in ("/", "/projects", "/projects/new", "/projects/1"):
        page = anonymous.get(path)
        assert (page.status, page.path) == (200, "/signin"), path
    assert anonymous.post("/signin", {"user": "alice"}).status == 403  # no CSRF token: refused
    assert anonymous.post("/signin", {"csrf": anonymous.get("/signin").csrf(), "user": "mallory"}).status == 400


def test_forms_need_the_sessions_csrf_token_and_cookies_cannot_be_forged(portal: str) -> None:
    alice = WebSession(portal)
    alice.sign_in("alice")
    assert alice.post("/projects", {"name": unique("csrf"), "files": "a"}).status == 403
    assert alice.post("/projects", {"csrf": "guess", "name": unique("csrf"), "files": "a"}).status == 403
    (cookie,) = [c for c in alice.cookies if c.name == COOKIE_NAME]
    payload, stamp, signature = str(cookie.value).split(".")
    cookie.value = f"{payload}.{stamp}.{signature[:-2]}AA"  # tampered signature
    assert alice.get("/projects").path == "/signin"


def test_session_cookie_signature_and_age() -> None:
    async def app(scope: object, receive: object, send: object) -> None:  # never called here
        raise AssertionError

    middleware = SignedCookieSessionMiddleware(app, "s" * 32, max_age=60)
    value = middleware.encode({"user": "alice"}, now=1000)
    assert middleware.decode(value, now=1030) == {"user": "alice"}
    assert middleware.decode(value, now=1061) == {}  # too old
    assert middleware.decode(value, now=900) == {}  # from the future
    assert SignedCookieSessionMiddleware(app, "t" * 32).decode(value, now=1000) == {}  # another secret
    payload, stamp, signature = value.split(".")
    assert middleware.decode(f"{payload}.{int(stamp) + 1}.{signature}", now=1030) == {}  # signed stamp
    for junk in ("", "null", "a.b", "a.b.c.d", f"!!.{stamp}.{signature}"):
        assert middleware.decode(junk, now=1030) == {}
    with pytest.raises(ValueError, match="at least 16 bytes"):
        SignedCookieSessionMiddleware(app, "short")


def test_signing_out_ends_the_session_for_every_copy_of_its_cookie(portal: str) -> None:
    """A cookie copied before sign-out (another tab, a shared machine, a thief) opens nothing after it."""
    alice = WebSession(portal)
    alice.sign_in("alice")
    (cookie,) = [c for c in alice.cookies if c.name == COOKIE_NAME]
    copied = WebSession(portal)
    copied.cookies.set_cookie(copy.copy(cookie))
    assert copied.get("/projects").path == "/projects"  # the copy works while the session lives
    page = alice.get("/projects")
    assert alice.post("/signout", {"csrf": page.csrf()}).path == "/signin"
    assert copied.get("/projects").path == "/signin"
    assert copied.get("/projects/new").path == "/signin"
    # signing in again opens a new session; the old copy stays dead
    alice.sign_in("alice")
    assert alice.get("/projects").path == "/projects" and copied.get("/projects").path == "/signin"


def test_odd_forms_and_paths_answer_400_not_500(portal: str) -> None:
    alice = WebSession(portal)
    alice.sign_in("alice")
    token = alice.get("/projects/new").csrf()
    crowded = {"csrf": token, "name": unique("many"), "files": "a", **{f"x{i}": "1" for i in range(25)}}
    page = alice.post("/projects", crowded)
    assert page.status == 400 and "more than 20 fields" in page.text
    for path in ("/projects/" + "9" * 5000, "/projects/12345678901234567890", "/projects/-1", "/projects/%C2%B2"):
        page = alice.get(path)
        assert page.status == 400 and "project id" in page.text, (path[:30], page.status)
    assert alice.get("/projects").status == 200  # the portal goes on


def test_dev_signin_redirects_only_to_local_paths(portal: str) -> None:
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        page = WebSession(portal).get(f"/dev/signin?user=alice&next={target}")
        assert (page.status, page.path) == (200, "/projects"), target
    page = WebSession(portal).get("/dev/signin?user=bob&next=/projects/new")
    assert (page.status, page.path) == (200, "/projects/new")


def test_dev_signin_is_off_outside_dev_mode(env: DevEnvironment) -> None:
    with PortalServer(env.portal_app(dev_mode=False)) as server:
        visitor = WebSession(server.url)
        assert visitor.get("/dev/signin?user=alice").status == 404
        page = visitor.get("/signin")
        assert "Dev sign-in is disabled" in page.text and 'value="alice"' not in page.text
        assert "<form" not in page.text.split("<main>", 1)[1]  # no sign-in form at all
        assert visitor.post("/signin", {"user": "alice"}).status == 404
        assert visitor.get("/projects").path == "/signin"


def test_run_portal_once_walks_through_and_exits(tmp_path: Path) -> None:
    completed = run_example("portal/run_portal.py", "--once", "--dir", str(tmp_path), timeout=60)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    out = completed.stdout
    assert re.search(r"== portal at http://127\.0\.0\.1:\d+ \(dev mode\)", out)
    assert "the service sees user alice" in out and "his list does not show alice's project" in out
    assert "403 (not one of his projects)" in out and out.rstrip().endswith("done.")


# -- what a person sees in a browser ----------------------------------------------------------------------------


def chromium_binary() -> str:
    """Chromium, never skipped: ./test installs it (scripts/ensure-chromium.sh); without it this test fails."""
    candidate = os.environ.get("RPCFRAMEWORK_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.access(candidate, os.X_OK):
        pytest.fail(
            "headless Chromium is needed for the portal's browser test and was not found: run "
            "scripts/ensure-chromium.sh as root (apt-get install -y chromium) or set RPCFRAMEWORK_CHROMIUM"
        )
    return candidate


def chromium(url: str, profile: Path, *extra: str, timeout: float = 60) -> str:
    """Load ``url`` in headless Chromium (a fresh profile) and return what ``--dump-dom`` printed."""
    command = [
        chromium_binary(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-proxy-server",
        f"--user-data-dir={profile}",
        *extra,
        url,
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # its own session: the browser and its helpers, nothing else
            process.wait(timeout=10)
    assert process.returncode == 0, err[-2000:]
    return out


def test_chromium_shows_the_signed_in_users_projects(portal: str, env: DevEnvironment, tmp_path: Path) -> None:
    alice, bob = WebSession(portal), WebSession(portal)
    alice.sign_in("alice")
    bob.sign_in("bob")
    mine = unique("alice-visible")
    theirs = unique("bob-private")
    alice.create_project(mine, ["one.root", "two.root"])
    bob.create_project(theirs, ["b.root"])
    dom = chromium(f"{portal}/dev/signin?user=alice&next=/projects", tmp_path / "profile", "--dump-dom")
    assert "<h1>My projects</h1>" in dom
    assert 'id="signed-in-as">Signed in as <strong>alice</strong>' in dom
    assert re.search(rf'<a href="/projects/\d+">{mine}</a>', dom)
    assert theirs not in dom
    seen = seen_identity(dom)
    assert seen["username"] == "alice" and seen["dn"] == env.users["alice"].dn
    assert seen["delegated-from"] == env.portal_host.dn
    shot = tmp_path / "projects.png"
    chromium(
        f"{portal}/dev/signin?user=alice&next=/projects",
        tmp_path / "profile2",
        "--window-size=1100,800",
        f"--screenshot={shot}",
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
