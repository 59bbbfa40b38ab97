"""Minimal HTTP/1.1 server plumbing shared by the demo/test receiver and the codec server.

Dependency-free on purpose: both are small, local services (a receiver that must never be
the benchmark's bottleneck, a codec server that holds the key) where a web framework would
add more surface than it saves.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Self

REASONS = {
    200: "OK",
    204: "No Content",
    302: "Found",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    410: "Gone",
    413: "Content Too Large",
    422: "Unprocessable Content",
    429: "Too Many Requests",
}


class HttpError(Exception):
    """A request we refuse, with the status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    def render(self, *, close: bool = False) -> bytes:
        headers = {
            **self.headers,
            "content-length": str(len(self.body)),
            "connection": "close" if close else "keep-alive",
        }
        head = f"HTTP/1.1 {self.status} {REASONS.get(self.status, 'Status')}\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in headers.items()
        )
        return head.encode("latin-1") + b"\r\n" + self.body


async def read_request(reader: asyncio.StreamReader, *, max_body: int) -> Request | None:
    """One request from the connection; None when the client closed it between requests."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as err:
        if not err.partial:
            return None
        raise
    except asyncio.LimitOverrunError:
        raise HttpError(400, "request head too large") from None
    request_line, *lines = head.decode("latin-1").split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3:
        raise HttpError(400, "malformed request line")
    headers: dict[str, str] = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise HttpError(400, "chunked bodies are not supported; send content-length")
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        raise HttpError(400, "bad content-length") from None
    if length < 0 or length > max_body:
        raise HttpError(413, f"body over {max_body} bytes")
    body = await reader.readexactly(length)
    return Request(parts[0].upper(), parts[1], headers, body)


class ConnectionServer(ABC):
    """An asyncio TCP server that tracks its connections and closes them all on exit.

    Subclasses implement `serve_connection`; a client that breaks, vanishes or is too slow
    just gets hung up on.
    """

    def __init__(self, host: str, port: int, *, head_limit: int = 64 * 1024) -> None:
        self._host = host
        self._port = port
        self._head_limit = head_limit
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    @abstractmethod
    async def serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Serve one connection until it should close."""

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(
            self._serve, self._host, self._port, limit=self._head_limit
        )
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
            await self.serve_connection(reader, writer)
        except (
            TimeoutError,
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
        ):
            pass
        except asyncio.CancelledError:
            pass  # Only we cancel these tasks, when the server stops.
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
