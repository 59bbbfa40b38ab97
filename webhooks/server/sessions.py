"""Signed session cookies: who signed in, their CSRF token, and when the session ends.

Stateless (nothing to store, survives a console restart when `session_secret` is set) and
tamper-proof (HMAC-SHA256). The cookie is HttpOnly, SameSite=Strict, and Secure whenever
the request came over https.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import asdict, dataclass

from starlette.requests import Request
from starlette.responses import Response


@dataclass(frozen=True)
class Session:
    csrf: str
    expires: float
    user: str | None = None
    role: str | None = None


class SessionCodec:
    COOKIE = "webhooks_session"

    def __init__(self, key: bytes, *, lifetime_seconds: float) -> None:
        self._key = key
        self._lifetime = lifetime_seconds

    def new(self, user: str | None = None, role: str | None = None) -> Session:
        """A fresh session (and CSRF token): at sign-in, so a planted one is worthless."""
        return Session(
            csrf=secrets.token_urlsafe(24),
            expires=time.time() + self._lifetime,
            user=user,
            role=role,
        )

    def dump(self, session: Session) -> str:
        body = base64.urlsafe_b64encode(json.dumps(asdict(session)).encode()).decode()
        return f"{body}.{self._sign(body)}"

    def load(self, cookie: str | None) -> Session | None:
        if not cookie or "." not in cookie:
            return None
        body, _, signature = cookie.rpartition(".")
        if not hmac.compare_digest(signature, self._sign(body)):
            return None
        try:
            session = Session(**json.loads(base64.urlsafe_b64decode(body)))
        except (ValueError, TypeError):
            return None
        return session if session.expires > time.time() else None

    def proxy_csrf(self, user: str) -> str:
        """In proxy mode there is no sign-in; the CSRF token is bound to the user instead."""
        return self._sign(f"proxy-csrf:{user}")

    def set_cookie(self, request: Request, response: Response, session: Session) -> None:
        response.set_cookie(
            self.COOKIE,
            self.dump(session),
            max_age=int(self._lifetime),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )

    def _sign(self, text: str) -> str:
        digest = hmac.new(self._key, text.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")
