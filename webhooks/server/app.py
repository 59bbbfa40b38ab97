"""The console: one FastAPI app serving the operator pages, the JSON API under `/api/v1`
and the codec endpoint for the Temporal UI, run by uvicorn (`webhooks console`).

    app = create_app(Settings(), ConsoleSettings())    # connects to Temporal at startup
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from temporalio.client import Client, RPCError
from temporalio.service import RPCStatusCode

from webhooks.codec import codec_from_settings
from webhooks.config import Settings
from webhooks.ops.errors import ConflictError, InvalidInputError, NotFoundError
from webhooks.ops.paging import BadCursorError
from webhooks.publisher import connect
from webhooks.registry.errors import (
    EndpointNotFoundError,
    EndpointUnavailableError,
    InvalidDestinationError,
    RegistryError,
    RegistryUnavailableError,
    SecretKeysError,
    VersionConflictError,
)
from webhooks.registry.service import open_registry
from webhooks.server import api, api_endpoints, api_events, codec_routes, endpoint_pages, pages
from webhooks.server.auth import Authenticator
from webhooks.server.context import ConsoleContext
from webhooks.server.deps import ForbiddenPageError, SignInRequiredError
from webhooks.server.security import SecurityHeaders
from webhooks.server.serving import serving
from webhooks.server.settings import ConsoleSettings

STATIC = Path(__file__).parent / "static"
VERSION = "1"


def create_app(
    settings: Settings, console: ConsoleSettings, *, client: Client | None = None
) -> FastAPI:
    """The app; without `client` it connects to Temporal (with the codec) at startup."""
    ctx = ConsoleContext(
        settings=settings,
        console=console,
        auth=Authenticator(console),
        codec=codec_from_settings(settings),
        client=client,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if ctx.client is None:
            ctx.client = await connect(settings)
        # Like the worker: an empty or older registry schema is brought up to date.
        async with open_registry(settings, migrate=True) as registry:
            ctx.registry_ = registry
            yield

    app = FastAPI(
        title="StreamPay webhooks console",
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.console = ctx
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(codec_routes.router)
    app.include_router(api.router)
    app.include_router(api_endpoints.router)
    app.include_router(api_events.router)
    app.include_router(pages.router)
    app.include_router(endpoint_pages.router)
    _errors(app)

    schema: dict[str, Any] = {}

    @app.get("/api/v1/openapi.json", include_in_schema=False)
    async def openapi() -> JSONResponse:
        if not schema:
            schema.update(
                get_openapi(
                    title="StreamPay webhooks management API",
                    version=VERSION,
                    description=api.__doc__,
                    routes=[
                        *api.router.routes,
                        *api_endpoints.router.routes,
                        *api_events.router.routes,
                    ],
                )
            )
            schema["components"].setdefault("securitySchemes", {})["bearer"] = {
                "type": "http",
                "scheme": "bearer",
            }
            schema["security"] = [{"bearer": []}]
        return JSONResponse(schema)

    return app


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _errors(app: FastAPI) -> None:
    def handle(status: int) -> Callable[[Request, Exception], Response]:
        def respond(request: Request, exc: Exception) -> Response:
            if _is_api(request):
                return JSONResponse({"detail": str(exc)}, status)
            return pages.error_page(request, status, str(exc))

        return respond

    app.add_exception_handler(NotFoundError, handle(404))
    app.add_exception_handler(ConflictError, handle(409))
    app.add_exception_handler(BadCursorError, handle(400))
    app.add_exception_handler(ForbiddenPageError, handle(403))
    app.add_exception_handler(EndpointNotFoundError, handle(404))
    app.add_exception_handler(VersionConflictError, handle(409))
    app.add_exception_handler(EndpointUnavailableError, handle(409))
    app.add_exception_handler(InvalidDestinationError, handle(400))
    app.add_exception_handler(SecretKeysError, handle(503))
    app.add_exception_handler(RegistryUnavailableError, handle(503))
    app.add_exception_handler(RegistryError, handle(400))
    app.add_exception_handler(ValueError, handle(400))

    @app.exception_handler(InvalidInputError)
    async def invalid_input(request: Request, exc: Exception) -> Response:
        # Shaped like FastAPI's own 422, so the API has one kind of validation error.
        assert isinstance(exc, InvalidInputError)
        if _is_api(request):
            return JSONResponse({"detail": exc.errors}, 422)
        return pages.error_page(request, 422, str(exc))

    @app.exception_handler(SignInRequiredError)
    async def sign_in(request: Request, _: Exception) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        login = request.url_for("login_form").include_query_params(next=target)
        return RedirectResponse(str(login.path) + "?" + login.query, status_code=303)

    @app.exception_handler(RPCError)
    async def temporal_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RPCError)
        status, message = temporal_answer(exc)
        if _is_api(request):
            return JSONResponse({"detail": message}, status)
        return pages.error_page(request, status, message)


def temporal_answer(exc: RPCError) -> tuple[int, str]:
    """The HTTP status and message for an error from Temporal. A query needs a running
    worker: when none polls, or the workflow cannot answer yet, that is a 503 (try again
    later), not a conflict nor a bad request."""
    message = f"Temporal said: {exc.message}"
    if exc.status is RPCStatusCode.FAILED_PRECONDITION and "no poller" in exc.message:
        return 503, "no worker is polling this workflow's task queue; try again once one runs"
    if exc.status is RPCStatusCode.RESOURCE_EXHAUSTED:
        return 503, f"{message} (the workflow is busy or no worker is running; try again)"
    status = {
        RPCStatusCode.NOT_FOUND: 404,
        RPCStatusCode.INVALID_ARGUMENT: 400,
        RPCStatusCode.ALREADY_EXISTS: 409,
        RPCStatusCode.FAILED_PRECONDITION: 409,
    }.get(exc.status, 503)
    return status, message


async def serve_console(
    settings: Settings,
    console: ConsoleSettings,
    stop: asyncio.Event,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    announce: Callable[[str], None] = print,
    client: Client | None = None,
) -> None:
    """Serve until `stop` is set (`webhooks console`, `webhooks dev`)."""
    config = uvicorn.Config(
        create_app(settings, console, client=client),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=[str(n) for n in console.trusted_proxies],
        lifespan="on",
    )
    async with serving(config) as (bound_host, bound_port):
        announce(f"console on http://{bound_host}:{bound_port}")
        await stop.wait()
