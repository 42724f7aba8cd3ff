"""A tiny HTTP client with a cookie jar, as a person's browser session: what ``run_portal.py --once`` and the tests
use to talk to the portal over real HTTP (stdlib ``urllib``; redirects followed, proxies from the environment
ignored, since everything is on loopback)."""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.cookiejar import CookieJar

__all__ = ["Page", "WebSession"]

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass(frozen=True)
class Page:
    """One answer: the HTTP status, the URL it came from after redirects, the body as text."""

    status: int
    url: str
    text: str

    @property
    def path(self) -> str:
        return urllib.parse.urlsplit(self.url).path

    def csrf(self) -> str:
        """The CSRF token of the page's forms."""
        match = _CSRF.search(self.text)
        if match is None:
            raise AssertionError(f"no CSRF token on {self.url}")
        return match.group(1)


class WebSession:
    """Requests to ``base_url`` sharing one cookie jar; 4xx/5xx answers are returned, not raised."""

    def __init__(self, base_url: str, *, timeout: float = 15.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.cookies = CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(self.cookies)
        )

    def _open(self, request: urllib.request.Request) -> Page:
        try:
            with self.opener.open(request, timeout=self.timeout) as response:
                return Page(response.status, response.geturl(), response.read().decode("utf-8"))
        except urllib.error.HTTPError as error:
            with error:
                return Page(error.code, error.geturl(), error.read().decode("utf-8", "replace"))

    def get(self, path: str) -> Page:
        return self._open(urllib.request.Request(self.base_url + path))

    def post(self, path: str, fields: dict[str, str]) -> Page:
        data = urllib.parse.urlencode(fields).encode()
        return self._open(urllib.request.Request(self.base_url + path, data=data, method="POST"))

    def sign_in(self, user: str) -> Page:
        """Sign in through the dev sign-in form, as a person would: load the page, pick the user."""
        form = self.get("/signin")
        return self.post("/signin", {"csrf": form.csrf(), "user": user})

    def create_project(self, name: str, files: list[str]) -> Page:
        form = self.get("/projects/new")
        return self.post("/projects", {"csrf": form.csrf(), "name": name, "files": "\n".join(files)})
