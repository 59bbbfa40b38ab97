"""uvicorn inside our own event loop (`webhooks.server.serving`): the console and the
receiver start on a known port, and say why when they cannot."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx
import pytest
import uvicorn

from webhooks.server.serving import serving

Message = MutableMapping[str, Any]


async def hello(
    scope: Message, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Any]
) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


def config(port: int = 0) -> uvicorn.Config:
    return uvicorn.Config(
        hello, host="127.0.0.1", port=port, lifespan="off", log_config=None, interface="asgi3"
    )


async def test_serves_on_the_port_it_yields_until_the_block_ends() -> None:
    async with httpx.AsyncClient() as http:
        async with serving(config()) as (host, port):
            answer = await http.get(f"http://{host}:{port}/")
        assert (answer.status_code, answer.text) == (200, "hello")
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://{host}:{port}/")


async def test_a_taken_port_raises_instead_of_exiting() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match="in use"):
            async with serving(config(port)):
                pass
