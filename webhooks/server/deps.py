"""Authentication and authorization as FastAPI dependencies, one flavour per audience:
the API answers 401/403 in JSON; pages send a browser to sign in, or show 403."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from webhooks.core.roles import Role
from webhooks.server.auth import Principal, Source
from webhooks.server.context import ConsoleContext, context

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class SignInRequiredError(Exception):
    """A page asked for by someone not signed in: redirect to the sign-in page."""


class ForbiddenPageError(Exception):
    """A page or action the signed-in user's role does not allow."""


def principal(
    request: Request, ctx: Annotated[ConsoleContext, Depends(context)]
) -> Principal | None:
    return ctx.auth.authenticate(request)


async def csrf_ok(request: Request, who: Principal) -> bool:
    """State changes by a browser (session or proxy) must carry the CSRF token, as a form
    field or a header. Bearer tokens are not ambient credentials, so they need none."""
    if who.source is Source.TOKEN or request.method in SAFE_METHODS:
        return True
    offered = request.headers.get(CSRF_HEADER)
    if offered is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        offered = value if isinstance(value, str) else None
    return offered is not None and bool(who.csrf) and hmac.compare_digest(offered, who.csrf)


def api_role(needed: Role) -> Callable[..., Awaitable[Principal]]:
    async def dependency(
        request: Request, who: Annotated[Principal | None, Depends(principal)]
    ) -> Principal:
        if who is None:
            raise HTTPException(
                401, "sign in or send Authorization: Bearer <token>", {"www-authenticate": "Bearer"}
            )
        if not await csrf_ok(request, who):
            raise HTTPException(403, "missing or wrong CSRF token")
        if not who.may(needed):
            raise HTTPException(403, f"needs the {needed.value} role")
        return who

    return dependency


def page_role(needed: Role) -> Callable[..., Awaitable[Principal]]:
    async def dependency(
        request: Request, who: Annotated[Principal | None, Depends(principal)]
    ) -> Principal:
        if who is None:
            raise SignInRequiredError
        if not await csrf_ok(request, who):
            raise ForbiddenPageError("missing or wrong CSRF token: reload the page and retry")
        if not who.may(needed):
            raise ForbiddenPageError(f"this needs the {needed.value} role")
        return who

    return dependency
