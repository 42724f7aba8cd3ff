"""Signed session cookies for the portal.

The portal keeps only who signed in (and a CSRF token) in the session, in a cookie signed with a secret that is
made at random when the portal starts: a user can read the cookie but not change it, and a restart signs everyone
out. Starlette's :class:`~starlette.middleware.sessions.SessionMiddleware` does exactly this and is used when its
dependency ``itsdangerous`` is installed. The ``examples`` extra does not install it, so
:class:`SignedCookieSessionMiddleware` is the same thing with the standard library (HMAC-SHA256 over the
base64-encoded JSON and a timestamp, ``compare_digest``, a maximum age): the same ``request.session`` dict, the same
cookie attributes (``HttpOnly``, ``SameSite=Lax``, ``Secure`` when asked).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["LiveSessions", "SignedCookieSessionMiddleware", "session_middleware"]

#: The portal's session cookie; its value is ``<payload>.<timestamp>.<signature>``.
COOKIE_NAME = "portal_session"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SignedCookieSessionMiddleware:
    """``request.session`` in a signed cookie (what Starlette's ``SessionMiddleware`` does, without itsdangerous)."""

    def __init__(
        self,
        app: ASGIApp,
        secret_key: str | bytes,
        *,
        session_cookie: str = COOKIE_NAME,
        max_age: int = 8 * 3600,
        same_site: str = "lax",
        https_only: bool = False,
    ) -> None:
        self.app = app
        self.key = secret_key.encode() if isinstance(secret_key, str) else secret_key
        if len(self.key) < 16:
            raise ValueError("the session secret must be at least 16 bytes; make it with secrets.token_urlsafe()")
        self.cookie = session_cookie
        self.max_age = max_age
        flags = f"; Max-Age={max_age}; Path=/; HttpOnly; SameSite={same_site}"
        self.flags = flags + ("; Secure" if https_only else "")

    def _sign(self, message: str) -> str:
        return _b64(hmac.new(self.key, message.encode("ascii"), hashlib.sha256).digest())

    def encode(self, session: dict[str, Any], now: float | None = None) -> str:
        payload = _b64(json.dumps(session, separators=(",", ":")).encode())
        message = f"{payload}.{int(time.time() if now is None else now)}"
        return f"{message}.{self._sign(message)}"

    def decode(self, value: str | None, now: float | None = None) -> dict[str, Any]:
        """The session in a cookie value; empty when it is missing, tampered with, malformed or too old."""
        if not value or value.count(".") != 2:
            return {}
        message, signature = value.rsplit(".", 1)
        if not hmac.compare_digest(signature, self._sign(message)):
            return {}
        payload, stamp = message.split(".")
        try:
            age = (time.time() if now is None else now) - int(stamp)
            session = json.loads(_unb64(payload))
        except (ValueError, binascii.Error):
            return {}
        if not 0 <= age <= self.max_age or not isinstance(session, dict):
            return {}
        return session

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        had_cookie = self.cookie in HTTPConnection(scope).cookies
        scope["session"] = self.decode(HTTPConnection(scope).cookies.get(self.cookie))

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if scope["session"]:
                    headers.append("Set-Cookie", f"{self.cookie}={self.encode(scope['session'])}{self.flags}")
                elif had_cookie:
                    expired = self.flags.replace(f"Max-Age={self.max_age}", "Max-Age=0")
                    headers.append("Set-Cookie", f"{self.cookie}=null{expired}")
            await send(message)

        await self.app(scope, receive, send_with_cookie)


class LiveSessions:
    """The sessions signed in now, server side: a signed cookie alone cannot be taken back, so each session carries
    an id, and signing out removes it here. A cookie copied before sign-out then opens nothing, though its signature
    is still good. Bounded: ids older than ``max_age`` are forgotten, and past ``limit`` the oldest go first (their
    owners sign in again). In memory, per portal process: a restart signs everybody out, as the random secret does.
    """

    def __init__(self, *, max_age: float = 8 * 3600, limit: int = 100_000, clock: Callable[[], float] = time.time):
        self._max_age = max_age
        self._limit = limit
        self._clock = clock
        self._opened: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def open(self) -> str:
        """A new session id, live until :meth:`close` or ``max_age``."""
        sid = secrets.token_urlsafe(18)
        now = self._clock()
        with self._lock:
            self._prune(now)
            self._opened[sid] = now
            while len(self._opened) > self._limit:
                self._opened.popitem(last=False)
        return sid

    def is_live(self, sid: object) -> bool:
        if not isinstance(sid, str):
            return False
        with self._lock:
            opened = self._opened.get(sid)
        return opened is not None and self._clock() - opened <= self._max_age

    def close(self, sid: object) -> None:
        if isinstance(sid, str):
            with self._lock:
                self._opened.pop(sid, None)

    def __len__(self) -> int:
        return len(self._opened)

    def _prune(self, now: float) -> None:
        while self._opened:
            sid, opened = next(iter(self._opened.items()))
            if now - opened <= self._max_age:
                return
            del self._opened[sid]


def session_middleware(secret_key: str, *, https_only: bool = False) -> Middleware:
    """Starlette's ``SessionMiddleware`` when ``itsdangerous`` is installed, else the stdlib equivalent."""
    options: dict[str, Any] = {
        "secret_key": secret_key,
        "session_cookie": COOKIE_NAME,
        "max_age": 8 * 3600,
        "same_site": "lax",
        "https_only": https_only,
    }
    try:
        from starlette.middleware.sessions import SessionMiddleware
    except ModuleNotFoundError:  # itsdangerous is missing
        return Middleware(SignedCookieSessionMiddleware, **options)
    return Middleware(SessionMiddleware, **options)
