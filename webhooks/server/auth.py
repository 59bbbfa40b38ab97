"""Who is asking: a bearer token, a signed session cookie, or a trusted proxy's header.

Passwords are argon2 hashes (argon2-cffi); API tokens are random and long, so a SHA-256 of
each is enough and keeps every API call cheap. Comparisons are in constant time, and no
password, token or hash is ever logged or returned.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import ip_address

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from starlette.requests import Request

from webhooks.core.roles import Role
from webhooks.server.sessions import Session, SessionCodec
from webhooks.server.settings import ConsoleSettings

TOKEN_PREFIX = "wht_"
_hasher = PasswordHasher()
# Verified against when the user is unknown, so timing does not tell who exists.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class Source(StrEnum):
    TOKEN = "token"
    SESSION = "session"
    PROXY = "proxy"


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    source: Source
    csrf: str = ""
    """The token every state change must carry (sessions and proxy mode; not bearer tokens,
    which a browser never sends by itself)."""

    def may(self, needed: Role) -> bool:
        return self.role.allows(needed)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def new_token() -> tuple[str, str]:
    """A fresh API token and the hash to configure: (token, `sha256:<hex>`)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


class Authenticator:
    """Resolves a request to a principal, from the console's settings."""

    def __init__(self, settings: ConsoleSettings) -> None:
        found = settings.principals()
        self.settings = settings
        self._users = {u.name: u for u in found.users}
        self._tokens = [(t.token_hash.get_secret_value(), t) for t in found.tokens]
        secret = settings.session_secret
        self.sessions = SessionCodec(
            secret.get_secret_value().encode() if secret else secrets.token_bytes(32),
            lifetime_seconds=settings.session_hours * 3600,
        )

    @property
    def has_users(self) -> bool:
        return bool(self._users)

    def check_password(self, name: str, password: str) -> Role | None:
        user = self._users.get(name)
        stored = user.password_hash.get_secret_value() if user else _DUMMY_HASH
        ok = False
        try:
            ok = _hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            pass
        return user.role if ok and user else None

    def authenticate(self, request: Request) -> Principal | None:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return self._from_token(credentials.strip())
        proxied = self._from_proxy(request)
        if proxied is not None:
            return proxied
        session = self.session(request)
        if session is None or session.user is None or session.role is None:
            return None
        user = self._users.get(session.user)
        if user is None:
            return None  # Removed from the configuration since signing in.
        return Principal(session.user, user.role, Source.SESSION, csrf=session.csrf)

    def session(self, request: Request) -> Session | None:
        return self.sessions.load(request.cookies.get(SessionCodec.COOKIE))

    def _from_token(self, token: str) -> Principal | None:
        offered = hash_token(token)
        match = None
        for stored, config in self._tokens:
            if hmac.compare_digest(stored, offered):
                match = config
        return Principal(match.name, match.role, Source.TOKEN) if match else None

    def _from_proxy(self, request: Request) -> Principal | None:
        header = self.settings.proxy_user_header
        name = request.headers.get(header, "").strip() if header else ""
        if not name or request.client is None:
            return None
        try:
            peer = ip_address(request.client.host)
        except ValueError:
            return None
        if not any(peer in network for network in self.settings.trusted_proxies):
            return None
        role = self.settings.proxy_roles.get(name, self.settings.proxy_default_role)
        if role is None:
            return None
        return Principal(name, role, Source.PROXY, csrf=self.sessions.proxy_csrf(name))
