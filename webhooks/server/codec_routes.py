"""Temporal's remote codec protocol, for the Temporal Web UI and CLI, behind the console's
sign-in: `POST /codec/decode` and `/codec/encode` with `{"payloads": [<Payload JSON>]}`.

Point the UI at `https://console.example/codec` with credentials included
(`TEMPORAL_CODEC_ENDPOINT`, `TEMPORAL_CODEC_INCLUDE_CREDENTIALS=true`): the browser then
sends the console's session cookie, which SameSite=Strict still allows between the UI and
the console on one site. The CLI uses a token: `--codec-auth "Bearer wht_..."`. No secret
ever sits in the URL. Decoding shows payloads, so it needs the payload role; encoding
(writing ciphertext) needs admin. CORS lets only the configured UI origins read answers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload

from webhooks.codec import CodecKeyError
from webhooks.core.roles import Role
from webhooks.server.auth import Principal
from webhooks.server.context import ConsoleContext, context
from webhooks.server.deps import principal

MAX_BODY_BYTES = 8 * 1024 * 1024
"""Temporal refuses payloads over 2 MB, and the UI sends a few at a time."""

router = APIRouter(prefix="/codec", include_in_schema=False)
Ctx = Annotated[ConsoleContext, Depends(context)]
Who = Annotated[Principal | None, Depends(principal)]


class _BadRequestError(ValueError):
    pass


def _cors(request: Request, ctx: ConsoleContext) -> dict[str, str]:
    origin = request.headers.get("origin", "").rstrip("/")
    if origin and origin in ctx.console.codec_origins:
        return {
            "access-control-allow-origin": origin,
            "access-control-allow-credentials": "true",
            "vary": "Origin",
        }
    return {}


def _error(status: int, message: str, headers: Mapping[str, str]) -> JSONResponse:
    return JSONResponse({"error": message}, status, headers=dict(headers))


@router.options("/{action}")
async def preflight(action: str, request: Request, ctx: Ctx) -> Response:
    """A CORS preflight carries no credentials; the real request is checked."""
    if action not in ("decode", "encode"):
        return _error(404, "not found: use POST /codec/decode or /codec/encode", {})
    headers = _cors(request, ctx)
    if headers:
        headers |= {
            "access-control-allow-methods": "POST, OPTIONS",
            "access-control-allow-headers": request.headers.get(
                "access-control-request-headers", "authorization, content-type"
            ),
            "access-control-max-age": "600",
        }
    return Response(status_code=204, headers=headers)


@router.api_route("/{action}", methods=["GET", "PUT", "DELETE", "PATCH"])
async def wrong_method(action: str, request: Request, ctx: Ctx) -> Response:
    return _error(405, "use POST", _cors(request, ctx) | {"allow": "POST, OPTIONS"})


@router.post("/{action}")
async def transcode(
    action: str,
    request: Request,
    ctx: Ctx,
    who: Who,
) -> Response:
    cors = _cors(request, ctx)
    if action not in ("decode", "encode"):
        return _error(404, "not found: use POST /codec/decode or /codec/encode", cors)
    if who is None:
        return _error(
            401,
            "sign in to the console, or send a bearer token",
            cors | {"www-authenticate": "Bearer"},
        )
    needed = ctx.console.payload_role if action == "decode" else Role.ADMIN
    if not who.may(needed):
        return _error(403, f"{action} needs the {needed.value} role", cors)
    if ctx.codec is None:
        return _error(503, "no codec keys configured (WEBHOOKS_CODEC_KEYS)", cors)
    try:
        payloads = _parse(await _read_capped(request))
        done = await (
            ctx.codec.decode(payloads) if action == "decode" else ctx.codec.encode(payloads)
        )
    except _BadRequestError as err:
        return _error(413 if "larger" in str(err) else 400, str(err), cors)
    except CodecKeyError as err:
        return _error(422, str(err), cors)
    body = {"payloads": [json_format.MessageToDict(p) for p in done]}
    return JSONResponse(body, headers=cors)


async def _read_capped(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        raise _BadRequestError(f"body is larger than {MAX_BODY_BYTES} bytes or has a bad length")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _BadRequestError(f"body is larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(body: bytes) -> list[Payload]:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _BadRequestError("body is not JSON") from None
    items = document.get("payloads") if isinstance(document, dict) else None
    if not isinstance(items, list):
        raise _BadRequestError('body must be {"payloads": [...]}')
    try:
        return [json_format.ParseDict(item, Payload()) for item in items]
    except (json_format.ParseError, TypeError, AttributeError) as err:
        raise _BadRequestError(f"not a payload: {err}") from None
