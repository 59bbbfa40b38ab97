"""The codec server: lets an authorized operator read encrypted payloads in the Temporal UI
and CLI, without the key ever leaving this process.

It speaks Temporal's remote codec protocol: `POST {endpoint}/decode` and `/encode` with
`{"payloads": [<Payload as proto JSON>, ...]}` and the same shape back, plus CORS for the
Web UI's origin. Point the UI at it with `temporal server start-dev --ui-codec-endpoint`
(or the UI's `TEMPORAL_CODEC_ENDPOINT`) and the CLI with `--codec-endpoint` and
`--codec-auth "Bearer <token>"`.

Every request must carry the token from `WEBHOOKS_CODEC_SERVER_TOKEN`, either as
`Authorization: Bearer <token>` or, for a UI that cannot add headers (the dev server's UI
has no login), as the first path segment: `--ui-codec-endpoint http://127.0.0.1:8081/<token>`.
It is deliberately small and dependency-free (asyncio, HTTP/1.1, one request at a time per
connection); put it behind TLS and your SSO proxy outside a laptop.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Callable, Iterable
from typing import Any

from google.protobuf import json_format
from temporalio.api.common.v1 import Payload

from webhooks.codec import CodecKeyError, EncryptionCodec, codec_from_settings
from webhooks.config import Settings
from webhooks.server.http11 import ConnectionServer, HttpError, Request, Response, read_request

DEFAULT_ORIGINS = ("http://localhost:8233", "http://127.0.0.1:8233")
"""The dev server's Web UI."""
MAX_HEAD_BYTES = 16 * 1024
MAX_BODY_BYTES = 8 * 1024 * 1024
"""Temporal refuses payloads over 2 MB, and the UI sends a few at a time."""
READ_TIMEOUT_SECONDS = 30
MIN_TOKEN_LENGTH = 16


class CodecServer(ConnectionServer):
    """Serve decode/encode for `codec` to holders of `token` on host:port (0: a free port)."""

    def __init__(
        self,
        codec: EncryptionCodec,
        token: str,
        *,
        host: str = "127.0.0.1",
        port: int = 8081,
        origins: Iterable[str] = DEFAULT_ORIGINS,
        read_timeout: float = READ_TIMEOUT_SECONDS,
    ) -> None:
        if len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"the codec server token must be at least {MIN_TOKEN_LENGTH} characters"
            )
        super().__init__(host, port, head_limit=MAX_HEAD_BYTES)
        self._codec = codec
        self._token = token.encode()
        self._origins = frozenset(o.rstrip("/") for o in origins)
        self._read_timeout = read_timeout

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> CodecServer:
        codec = codec_from_settings(settings)
        if codec is None:
            raise CodecKeyError(
                "no codec keys: set WEBHOOKS_CODEC_KEYS or WEBHOOKS_CODEC_KEYS_FILE"
            )
        if settings.codec_server_token is None:
            raise ValueError("set WEBHOOKS_CODEC_SERVER_TOKEN: the codec server needs a token")
        return cls(codec, settings.codec_server_token.get_secret_value(), **options)

    async def serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        keep_alive = True
        while keep_alive:
            try:
                async with asyncio.timeout(self._read_timeout):
                    request = await read_request(reader, max_body=MAX_BODY_BYTES)
            except HttpError as err:
                writer.write(_error(err.status, str(err)).render(close=True))
                await writer.drain()
                return
            if request is None:
                return
            response = await self.handle(request)
            keep_alive = request.headers.get("connection", "").lower() != "close"
            writer.write(response.render(close=not keep_alive))
            await writer.drain()

    async def handle(self, request: Request) -> Response:
        """Answer one request (CORS headers included for an allowed origin)."""
        response = await self._route(request)
        origin = request.headers.get("origin", "").rstrip("/")
        if origin and origin in self._origins:
            response.headers |= {
                "access-control-allow-origin": origin,
                "access-control-allow-credentials": "true",
                "vary": "Origin",
            }
        return response

    async def _route(self, request: Request) -> Response:
        prefix, _, action = request.path.partition("?")[0].rstrip("/").rpartition("/")
        if action not in ("decode", "encode"):
            return _error(404, "not found: use POST /decode or /encode")
        if request.method == "OPTIONS":
            # A CORS preflight carries no credentials; the real request is checked.
            return Response(
                204,
                headers={
                    "access-control-allow-methods": "POST, OPTIONS",
                    "access-control-allow-headers": request.headers.get(
                        "access-control-request-headers", "authorization, content-type"
                    ),
                    "access-control-max-age": "600",
                },
            )
        if request.method != "POST":
            return _error(405, "use POST", {"allow": "POST, OPTIONS"})
        if not self._authorized(request, prefix):
            return _error(401, "missing or wrong token", {"www-authenticate": "Bearer"})
        try:
            payloads = _parse_payloads(request.body)
            if action == "decode":
                done = await self._codec.decode(payloads)
            else:
                done = await self._codec.encode(payloads)
        except HttpError as err:
            return _error(err.status, str(err))
        except CodecKeyError as err:
            return _error(422, str(err))
        body = json.dumps({"payloads": [json_format.MessageToDict(p) for p in done]})
        return Response(200, body.encode(), {"content-type": "application/json"})

    def _authorized(self, request: Request, prefix: str) -> bool:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        offered = [prefix.lstrip("/").encode()]
        if scheme.lower() == "bearer":
            offered.append(credentials.strip().encode())
        # Both compared, in constant time, so neither timing nor order leaks the token.
        results = [hmac.compare_digest(candidate, self._token) for candidate in offered]
        return any(results)


def _parse_payloads(body: bytes) -> list[Payload]:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise HttpError(400, "body is not JSON") from None
    items = document.get("payloads") if isinstance(document, dict) else None
    if not isinstance(items, list):
        raise HttpError(400, 'body must be {"payloads": [...]}')
    try:
        return [json_format.ParseDict(item, Payload()) for item in items]
    except json_format.ParseError as err:
        raise HttpError(400, f"not a payload: {err}") from None


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps({"error": message}).encode()
    return Response(status, body, {"content-type": "application/json", **(headers or {})})


async def serve_codec(
    settings: Settings,
    stop: asyncio.Event,
    *,
    host: str = "127.0.0.1",
    port: int = 8081,
    origins: Iterable[str] = DEFAULT_ORIGINS,
    announce: Callable[[str], None] = print,
) -> None:
    """Run the codec server until `stop` is set (`webhooks codec-server`)."""
    server = CodecServer.from_settings(settings, host=host, port=port, origins=origins)
    async with server:
        announce(
            f"codec server on {server.url} (POST /decode, /encode; Bearer token required)\n"
            f"UI:  temporal server start-dev --ui-codec-endpoint {server.url}/<token>\n"
            f"CLI: temporal workflow show --codec-endpoint {server.url} "
            '--codec-auth "Bearer <token>"'
        )
        await stop.wait()
