"""An HTTP receiver for demos, tests and benchmarks: records every request and answers as a
script says (status codes, slow answers, hangs, dropped connections, endless bodies).

Real HTTP over real sockets, served by uvicorn (with httptools, Node's llhttp parser: a
well-kept one, not ours) and a small ASGI app, fast enough never to be the benchmark's
bottleneck (as fast as the hand-written server it replaced on small requests, faster on
256 KiB ones).

    async with Receiver(scripted(Respond(500), then=Respond(200))) as rx:
        ...  # send to rx.url; rx.requests holds what arrived
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Self

import uvicorn
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from webhooks.server.serving import serving

MAX_REQUEST_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    """The request target as sent: path and query (`/a/b?c=d`)."""
    headers: dict[str, str]
    """Lower-case names; of a repeated header, the last value."""
    body: bytes
    received_at: float
    """`time.time()` when the request's body was complete."""
    client_port: int = 0
    """The sender's source port: two requests on one connection share it."""


@dataclass(frozen=True)
class Respond:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering (a slow receiver that still answers)."""


@dataclass(frozen=True)
class Hang:
    """Send nothing for this long (a receiver that times out), then close."""

    seconds: float


@dataclass(frozen=True)
class Drop:
    """Close the connection without answering."""


@dataclass(frozen=True)
class Stream:
    """Answer 200 and send `total` bytes in `chunk`-sized pieces, `interval` apart.

    With `stop_after`, announce `total` bytes but send only that many, then hold the
    connection open until the client closes it: a client that reads past `stop_after`
    waits forever (its timeout ends it), one that stops reading in time returns.
    """

    total: int
    chunk: int = 65536
    interval: float = 0.0
    stop_after: int | None = None


Behavior = Respond | Hang | Drop | Stream
Responder = Callable[[ReceivedRequest], Behavior]


def scripted(*behaviors: Behavior, then: Behavior | None = None) -> Responder:
    """Answer the n-th request with the n-th behavior, and every later one with `then`."""
    queue = list(behaviors)
    final = then or Respond(200)

    def respond(_: ReceivedRequest) -> Behavior:
        return queue.pop(0) if queue else final

    return respond


class Receiver:
    """Listen on 127.0.0.1 (a free port by default); `requests` holds what arrived."""

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        on_request: Callable[[ReceivedRequest, Behavior], None] | None = None,
    ) -> None:
        self.responder: Responder = responder or scripted()
        self.requests: list[ReceivedRequest] = []
        self._on_request = on_request
        self._host, self._port = host, port
        self._bound: int | None = None
        self._serving: contextlib.AbstractAsyncContextManager[tuple[str, int]] | None = None
        self._handlers: set[asyncio.Task[object]] = set()

    @property
    def port(self) -> int:
        assert self._bound is not None, "receiver not started"
        return self._bound

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    async def __aenter__(self) -> Self:
        config = uvicorn.Config(
            self._app,
            host=self._host,
            port=self._port,
            log_config=None,
            log_level="warning",
            access_log=False,
            interface="asgi3",
            ws="none",
            lifespan="off",
            proxy_headers=False,
            server_header=False,
            date_header=False,
            http="httptools",  # measured faster than h11 on 256 KiB bodies
            timeout_keep_alive=300,  # as long as any test waits between attempts
        )
        self._serving = serving(config)
        _, self._bound = await self._serving.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._serving is not None
        for task in list(self._handlers):  # hangs and endless streams end with us
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._serving.__aexit__(None, None, None)

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"  # no lifespan, no websockets
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve(scope, receive, send)
        except asyncio.CancelledError:
            await _hang_up(send, receive)  # only __aexit__ cancels us
        finally:
            self._handlers.discard(task)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        body = await _body(receive, headers)
        if body is None:  # incomplete or too large: unrecorded, unanswered
            await _hang_up(send, receive)
            return
        target = scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode("latin-1")
        request = ReceivedRequest(
            scope["method"], target, headers, body, time.time(), client_port=scope["client"][1]
        )
        self.requests.append(request)
        behavior = self.responder(request)
        if self._on_request:
            self._on_request(request, behavior)
        match behavior:
            case Respond(status, payload, extra, delay):
                if delay:
                    await asyncio.sleep(delay)
                await Response(payload, status, headers=dict(extra))(scope, receive, send)
            case Hang(seconds):
                await asyncio.sleep(seconds)
                await _hang_up(send, receive)
            case Stream(total, chunk, interval, stop_after):
                await _stream(send, receive, total, chunk, interval, stop_after)
            case Drop():
                await _hang_up(send, receive)


async def _body(receive: Receive, headers: dict[str, str]) -> bytes | None:
    """The whole body; None if it exceeds MAX_REQUEST_BYTES or the client went away first."""
    declared = headers.get("content-length", "0")
    if declared.isdigit() and int(declared) > MAX_REQUEST_BYTES:
        return None
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        if len(body) > MAX_REQUEST_BYTES:
            return None
        if not message.get("more_body", False):
            return bytes(body)


async def _stream(
    send: Send, receive: Receive, total: int, chunk: int, interval: float, stop_after: int | None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(total).encode())],
        }
    )
    sent, end = 0, min(total, stop_after if stop_after is not None else total)
    while sent < end:
        piece = min(chunk, end - sent)
        sent += piece
        await send({"type": "http.response.body", "body": b"x" * piece, "more_body": True})
        if interval:
            await asyncio.sleep(interval)
    if sent < total:
        await _disconnected(receive)  # until the client gives up and closes
        return
    await send({"type": "http.response.body", "body": b""})


async def _hang_up(send: Send, receive: Receive) -> None:
    """Close the connection without (finishing) an answer.

    ASGI has no way to say this: an app that returns without answering gets a 500 from
    uvicorn. So reach the connection itself: uvicorn's `send` is a method of its request
    cycle, which holds the transport (checked: an uvicorn that changes this raises, and the
    Drop and Hang tests in tests/unit/test_receiver.py fail). Then wait until uvicorn has
    seen the connection go, so that it neither answers nor complains."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if not isinstance(transport, asyncio.BaseTransport):
        raise RuntimeError("cannot reach uvicorn's transport to drop a connection")
    transport.close()
    await _disconnected(receive)


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
