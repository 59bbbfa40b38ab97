"""A small HTTP/1.1 receiver for demos, tests and benchmarks: records every request and
answers as a script says (status codes, hangs, dropped connections, endless bodies).

It is real HTTP over real sockets, deliberately dependency-free and fast enough to never be
the bottleneck of the benchmark. It is not a production web server.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from webhooks.server.http11 import ConnectionServer, HttpError, Response, read_request

MAX_REQUEST_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
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


class Receiver(ConnectionServer):
    """Listen on 127.0.0.1 (a free port by default); `requests` holds what arrived."""

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        on_request: Callable[[ReceivedRequest, Behavior], None] | None = None,
    ) -> None:
        super().__init__(host, port)
        self.responder: Responder = responder or scripted()
        self.requests: list[ReceivedRequest] = []
        self._on_request = on_request

    async def serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while await self._handle_one(reader, writer):
            pass

    async def _handle_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; False when the connection should close."""
        try:
            raw = await read_request(reader, max_body=MAX_REQUEST_BYTES)
        except HttpError:
            return False
        if raw is None:
            return False
        peer = writer.get_extra_info("peername")
        request = ReceivedRequest(
            raw.method, raw.path, raw.headers, raw.body, time.time(), client_port=peer[1]
        )
        self.requests.append(request)
        behavior = self.responder(request)
        if self._on_request:
            self._on_request(request, behavior)
        match behavior:
            case Respond(status, payload, extra, delay):
                if delay:
                    await asyncio.sleep(delay)
                writer.write(Response(status, payload, dict(extra)).render())
                await writer.drain()
                return True
            case Hang(seconds):
                await asyncio.sleep(seconds)
            case Stream(total, chunk, interval, stop_after):
                writer.write(f"HTTP/1.1 200 OK\r\ncontent-length: {total}\r\n\r\n".encode())
                sent, end = 0, min(total, stop_after if stop_after is not None else total)
                while sent < end:
                    piece = min(chunk, end - sent)
                    writer.write(b"x" * piece)
                    await writer.drain()
                    sent += piece
                    if interval:
                        await asyncio.sleep(interval)
                if sent < total:
                    await reader.read()  # Until the client gives up and closes.
            case Drop():
                pass
        return False
