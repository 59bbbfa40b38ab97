"""A small HTTP/1.1 receiver for demos, tests and benchmarks: records every request and
answers as a script says (status codes, hangs, dropped connections, endless bodies).

It is real HTTP over real sockets, deliberately dependency-free and fast enough to never be
the bottleneck of the benchmark. It is not a production web server.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_REQUEST_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float
    """`time.time()` when the request's body was complete."""


@dataclass(frozen=True)
class Respond:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Hang:
    """Send nothing for this long (a receiver that times out), then close."""

    seconds: float


@dataclass(frozen=True)
class Drop:
    """Close the connection without answering."""


@dataclass(frozen=True)
class Stream:
    """Answer 200 and send `total` bytes in `chunk`-sized pieces, `interval` apart."""

    total: int
    chunk: int = 65536
    interval: float = 0.0


Behavior = Respond | Hang | Drop | Stream
Responder = Callable[[ReceivedRequest], Behavior]

_REASONS = {200: "OK", 204: "No Content", 302: "Found", 410: "Gone", 429: "Too Many Requests"}


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
        self._host = host
        self._port = port
        self._on_request = on_request
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def port(self) -> int:
        assert self._server is not None, "receiver not started"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def __aenter__(self) -> Receiver:
        self._server = await asyncio.start_server(self._serve, self._host, self._port)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while await self._handle_one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            pass  # Only we cancel these tasks, when the receiver stops.
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _handle_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; False when the connection should close."""
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, path, _ = request_line.split(" ", 2)
        headers: dict[str, str] = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        if length > MAX_REQUEST_BYTES:
            return False
        body = await reader.readexactly(length)
        request = ReceivedRequest(method, path, headers, body, time.time())
        self.requests.append(request)
        behavior = self.responder(request)
        if self._on_request:
            self._on_request(request, behavior)
        match behavior:
            case Respond(status, payload, extra):
                reason = _REASONS.get(status, "Status")
                lines = [f"HTTP/1.1 {status} {reason}", f"content-length: {len(payload)}"]
                lines += [f"{k}: {v}" for k, v in extra.items()]
                writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)
                await writer.drain()
                return True
            case Hang(seconds):
                await asyncio.sleep(seconds)
            case Stream(total, chunk, interval):
                writer.write(f"HTTP/1.1 200 OK\r\ncontent-length: {total}\r\n\r\n".encode())
                sent = 0
                while sent < total:
                    piece = min(chunk, total - sent)
                    writer.write(b"x" * piece)
                    await writer.drain()
                    sent += piece
                    if interval:
                        await asyncio.sleep(interval)
            case Drop():
                pass
        return False
