"""Running uvicorn inside an asyncio program (the console, the demo and test receiver): on a
socket bound before serving (so port 0 works and the address is known at once), with the
caller owning signals and shutdown.

    async with serving(uvicorn.Config(app, host="127.0.0.1", port=0)) as (host, port):
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator

import uvicorn

STARTUP_POLL_SECONDS = 0.01


class _Server(uvicorn.Server):
    """Leaves signals to the caller (`webhooks console`, `webhooks dev`, tests)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serving(config: uvicorn.Config) -> AsyncIterator[tuple[str, int]]:
    """Serve for the block; yields the bound host and port. Raises why it could not start."""
    server = _Server(config)
    sock = _bind(config.host, config.port)
    host, port = sock.getsockname()[:2]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                await task  # raises why it could not start
                raise RuntimeError("the server stopped while starting")
            await asyncio.sleep(STARTUP_POLL_SECONDS)
        yield host, port
    finally:
        server.should_exit = True
        await task


def _bind(host: str, port: int) -> socket.socket:
    """As uvicorn binds, but a taken port raises OSError here (uvicorn logs and exits)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock
