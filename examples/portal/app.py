"""The portal web application (Starlette): people sign in, then see and manage *their* Dispatcher projects.

Every page that shows data calls the Dispatcher service through :class:`~examples.portal.gateway.DispatcherGateway`,
on behalf of the signed-in person (``rpcframework.delegate``), with the portal's one shared ``AsyncDispatcherClient``,
awaited on the event loop (no thread pool).

Pages:

=========================  ==========================================================================
``GET /``                   to ``/projects`` when signed in, else to ``/signin``
``GET /signin``             dev mode: pick a dev user; otherwise: how this deployment signs people in
``POST /signin``            dev mode only: sign in as the chosen dev user
``GET /dev/signin``         dev mode only: ``?user=alice&next=/projects`` signs in and redirects (for tests,
                            e.g. a headless browser that cannot fill in a form)
``POST /signout``           end the session (server side too: a copied cookie stops working)
``GET /projects``           my projects, and the identity the service saw
``GET /projects/new``       the form to create a project
``POST /projects``          create it, then show it
``GET /projects/{id}``      a project's status, if it is mine
=========================  ==========================================================================

Sessions are signed cookies (:mod:`examples.portal.sessions`) holding only who signed in, a session id and a CSRF
token; every form carries the token. The portal keeps the ids of live sessions, so signing out ends a session for
every copy of its cookie. Service refusals become pages with the service's message (403 for "not yours" or an
authorization refusal, 404 for an unknown project, 502 when the service refuses the portal itself).
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from examples.portal.gateway import UNAUTHORIZED_ERRNO, DispatcherGateway, PortalUser, ServiceRefused
from examples.portal.sessions import LiveSessions, session_middleware

__all__ = ["PortalSettings", "make_app"]

T = TypeVar("T")

TEMPLATES = Path(__file__).resolve().parent / "templates"
#: Forms are small; a bigger body is refused before it is read.
MAX_FORM_BYTES = 256 * 1024
MAX_FILES_PER_FORM = 1000
#: More fields than any of the portal's forms has: refused with 400 before they are looked at.
MAX_FORM_FIELDS = 20
#: Project ids are SQLite integers; a longer path segment is refused before it is parsed.
MAX_PROJECT_ID_DIGITS = 18

#: Sent with every response: no framing, no inline scripts, no referrer leaking project ids.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class PortalSettings:
    """How the portal runs: who may sign in (dev mode) and how the session cookie is signed."""

    users: Mapping[str, PortalUser] = field(default_factory=dict)
    dev_mode: bool = False
    #: Random per start unless given: a restart signs everybody out, and no secret lives in a file.
    session_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    #: Mark the cookie ``Secure`` (set it when the portal is served over HTTPS, as it must be in production).
    https_only: bool = False
    title: str = "Dispatcher portal"


class SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def make_app(gateway: DispatcherGateway, settings: PortalSettings) -> Starlette:
    """The ASGI application; serve it with uvicorn (see ``run_portal.py``)."""
    portal = Portal(gateway, settings)
    routes = [
        Route("/", portal.home),
        Route("/signin", portal.signin_page, methods=["GET"]),
        Route("/signin", portal.signin, methods=["POST"]),
        Route("/dev/signin", portal.dev_signin, methods=["GET"]),
        Route("/signout", portal.signout, methods=["POST"]),
        Route("/projects", portal.projects, methods=["GET"]),
        Route("/projects", portal.create_project, methods=["POST"]),
        Route("/projects/new", portal.new_project, methods=["GET"]),
        Route("/projects/{project_id}", portal.project, methods=["GET"]),
    ]
    middleware = [
        Middleware(SecurityHeaders),
        session_middleware(settings.session_secret, https_only=settings.https_only),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await gateway.aclose()  # the client's connections belong to this event loop

    app = Starlette(
        lifespan=lifespan,
        routes=routes,
        middleware=middleware,
        exception_handlers={ServiceRefused: portal.refused, HTTPException: portal.http_error},
    )
    app.state.portal = portal
    return app


def safe_next(target: str | None) -> str:
    """A local path to go to after signing in; anything else (another site, ``//host``) becomes ``/projects``."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/projects"
    return target


class Portal:
    """The request handlers; state is the gateway, the settings and the templates, all read-only."""

    def __init__(self, gateway: DispatcherGateway, settings: PortalSettings) -> None:
        self.gateway = gateway
        self.settings = settings
        self.templates = Jinja2Templates(directory=str(TEMPLATES))
        self.sessions = LiveSessions()

    # -- helpers -------------------------------------------------------------------------------------------------

    def render(self, request: Request, template: str, status_code: int = 200, /, **context: Any) -> Response:
        context.setdefault("user", self.signed_in(request))
        context.update(title=self.settings.title, dev_mode=self.settings.dev_mode, csrf=self.csrf_token(request))
        return self.templates.TemplateResponse(request, template, context, status_code=status_code)

    @staticmethod
    def csrf_token(request: Request) -> str:
        token = request.session.get("csrf")
        if not isinstance(token, str):
            token = request.session["csrf"] = secrets.token_urlsafe(24)
        return token

    async def form(self, request: Request) -> dict[str, str]:
        """The url-encoded form, size-bounded and CSRF-checked (the first value of each field)."""
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise HTTPException(413, f"the form is larger than {MAX_FORM_BYTES} bytes")
        try:
            fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
        except ValueError as exc:  # more than MAX_FORM_FIELDS fields
            raise HTTPException(400, f"the form has more than {MAX_FORM_FIELDS} fields") from exc
        values = {name: items[0] for name, items in fields.items()}
        expected = request.session.get("csrf")
        if not isinstance(expected, str) or not hmac.compare_digest(values.get("csrf", ""), expected):
            raise HTTPException(403, "the form expired or did not come from this portal: reload the page and retry")
        return values

    def signed_in(self, request: Request) -> PortalUser | None:
        """Who signed in, if the session is still live (signing out ends it server side, not just in the cookie)."""
        if not self.sessions.is_live(request.session.get("sid")):
            request.session.pop("user", None)  # signed out elsewhere, or from before a restart; CSRF token kept
            request.session.pop("sid", None)
            return None
        return PortalUser.from_session(request.session.get("user"))

    async def as_user(self, user: PortalUser, call: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Await a gateway call for ``user``: the RPC runs on the event loop, no thread per call."""
        return await call(user, *args)

    def sign_in(self, request: Request, name: str | None) -> None:
        chosen = self.settings.users.get(name or "")
        if not self.settings.dev_mode or chosen is None:
            raise HTTPException(400, f"unknown dev user {name!r}")
        self.sessions.close(request.session.get("sid"))
        request.session.clear()  # a fresh session (and CSRF token) for the new identity
        request.session["sid"] = self.sessions.open()
        request.session["user"] = chosen.to_session()
        self.csrf_token(request)

    # -- sign-in ---------------------------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        return RedirectResponse("/projects" if self.signed_in(request) else "/signin", status_code=303)

    async def signin_page(self, request: Request) -> Response:
        return self.render(request, "signin.html", users=list(self.settings.users.values()))

    async def signin(self, request: Request) -> Response:
        if not self.settings.dev_mode:
            raise HTTPException(404, "dev sign-in is disabled")
        values = await self.form(request)
        self.sign_in(request, values.get("user"))
        return RedirectResponse("/projects", status_code=303)

    async def dev_signin(self, request: Request) -> Response:
        if not self.settings.dev_mode:
            raise HTTPException(404, "dev sign-in is disabled")
        self.sign_in(request, request.query_params.get("user"))
        return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)

    async def signout(self, request: Request) -> Response:
        await self.form(request)
        self.sessions.close(request.session.get("sid"))  # a copy of the cookie opens nothing from now on
        request.session.clear()
        return RedirectResponse("/signin", status_code=303)

    # -- projects --------------------------------------------------------------------------------------------

    async def projects(self, request: Request) -> Response:
        user = self.signed_in(request)
        if user is None:
            return RedirectResponse("/signin", status_code=303)
        seen, projects = await self.as_user(user, self.gateway.my_projects)
        return self.render(request, "projects.html", seen=seen, projects=projects)

    async def new_project(self, request: Request) -> Response:
        if self.signed_in(request) is None:
            return RedirectResponse("/signin", status_code=303)
        return self.render(request, "new_project.html", name="", files="", error=None)

    async def create_project(self, request: Request) -> Response:
        user = self.signed_in(request)
        if user is None:
            return RedirectResponse("/signin", status_code=303)
        values = await self.form(request)
        name = values.get("name", "").strip()
        text = values.get("files", "")
        files = [line.strip() for line in text.splitlines() if line.strip()]
        error = None if len(files) <= MAX_FILES_PER_FORM else f"at most {MAX_FILES_PER_FORM} files per project here"
        if error is None:
            try:
                project_id = await self.as_user(user, self.gateway.create_project, name, files)
            except ServiceRefused as refused:
                if refused.errno != errno.EINVAL:
                    raise
                error = refused.message  # the service's own words: "files must be a non-empty list ..."
        if error is not None:
            return self.render(request, "new_project.html", 400, name=name, files=text, error=error)
        return RedirectResponse(f"/projects/{project_id}", status_code=303)

    async def project(self, request: Request) -> Response:
        user = self.signed_in(request)
        if user is None:
            return RedirectResponse("/signin", status_code=303)
        raw_id = str(request.path_params["project_id"])
        if not raw_id.isascii() or not raw_id.isdigit() or len(raw_id) > MAX_PROJECT_ID_DIGITS:
            raise HTTPException(400, f"a project id is a number of at most {MAX_PROJECT_ID_DIGITS} digits")
        project_id = int(raw_id)
        seen, status = await self.as_user(user, self.gateway.project_of, project_id)
        return self.render(request, "project.html", seen=seen, project=status)

    # -- errors ----------------------------------------------------------------------------------------------

    async def refused(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServiceRefused)
        portal_refused = "delegation refused" in exc.message
        if portal_refused:
            status, headline = 502, "The Dispatcher service refused to let this portal act for you"
        elif exc.errno == errno.ENOENT:
            status, headline = 404, "No such project"
        elif exc.errno in (errno.EACCES, UNAUTHORIZED_ERRNO):
            status, headline = 403, "Not allowed"
        else:
            status, headline = 502, "The Dispatcher service could not answer"
        return self.render(
            request, "error.html", status, headline=headline, message=exc.message, portal_refused=portal_refused
        )

    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        headline = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "Request refused")
        return self.render(
            request, "error.html", exc.status_code, headline=headline, message=exc.detail, portal_refused=False
        )
