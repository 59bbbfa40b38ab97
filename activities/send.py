"""The send activity: one signed HTTP POST per attempt, and nothing else.

It never raises for anything the receiver does: every outcome (status, timeout, refused
connection, oversized body) comes back as a `SendResult` that the workflow records and
classifies. Temporal's own retries are off; the workflow's loop is the retry policy.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from importlib.metadata import version

import httpx
from temporalio import activity

from activities.circuit_view import CircuitView
from activities.safe_transport import BlockedDestinationError, DestinationPolicy, GuardedTransport
from webhooks.core.circuit import signal_of
from webhooks.core.models import ErrorKind, SendRequest, SendResult
from webhooks.core.signing import signature_header
from webhooks.secrets import FileSecretStore, UnknownSecretRefError

USER_AGENT = f"StreamPay-Webhooks/{version('streampay-webhooks')}"
MAX_RESPONSE_BYTES = 64 * 1024
"""Read at most this much of a response (so the connection can be reused); drop the rest."""


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    # isascii: str.isdigit() also accepts digits like "²" that float() refuses.
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def error_kind_of(err: BaseException) -> ErrorKind:
    """Name a transport failure by its root cause (DNS, TLS, refused, dropped, timed out)."""
    if isinstance(err, BlockedDestinationError):
        return ErrorKind.BLOCKED_DESTINATION
    if isinstance(err, TimeoutError | httpx.TimeoutException):
        return ErrorKind.TIMEOUT
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, socket.gaierror):
            return ErrorKind.DNS
        if isinstance(cause, ssl.SSLError):
            return ErrorKind.TLS
        cause = cause.__cause__ or cause.__context__
    if isinstance(err, httpx.ConnectError):
        return ErrorKind.CONNECT
    return ErrorKind.PROTOCOL


def new_http_client(
    *,
    connect_timeout: float,
    max_connections: int,
    destinations: DestinationPolicy | None = None,
) -> httpx.AsyncClient:
    """The one pooled client a worker shares across all sends. Redirects are never followed.

    `destinations` puts the SSRF guard (`activities.safe_transport`) under every connection; the
    worker always passes one. Without it nothing is vetted: for tests and benchmarks only.
    """
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    return httpx.AsyncClient(
        follow_redirects=False,
        timeout=httpx.Timeout(None, connect=connect_timeout),
        limits=limits,
        transport=(
            GuardedTransport(destinations, limits=limits) if destinations is not None else None
        ),
        # identity: compressed bodies could expand past the read cap.
        headers={"user-agent": USER_AGENT, "accept-encoding": "identity"},
    )


class SendActivities:
    """Holds the worker's shared HTTP client, secret store and circuit view."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        secrets: FileSecretStore | None,
        *,
        timeout_seconds: float = 15,
        excerpt_bytes: int = 1024,
        circuit: CircuitView | None = None,
    ) -> None:
        self._circuit = circuit
        self._http = http
        self._secrets = secrets
        self._timeout = timeout_seconds
        self._excerpt_bytes = excerpt_bytes

    @activity.defn(name="send_webhook")
    async def send_webhook(self, request: SendRequest) -> SendResult:
        """One attempt, unless the endpoint's circuit holds it back (then no request)."""
        gated = self._circuit is not None and bool(request.endpoint_id)
        gate = self._circuit.gate(request.endpoint_id) if self._circuit and gated else None
        if gate is not None and not gate.allow:
            return SendResult(started_at=datetime.now(UTC), duration_ms=0, gate=gate)
        result = await self._post(request)
        if self._circuit and gated:
            probe = gate is not None and gate.probe
            self._circuit.record(request.endpoint_id, signal_of(result), probe=probe)
        return result

    async def _post(self, request: SendRequest) -> SendResult:
        started_at = datetime.now(UTC)
        t0 = time.perf_counter()

        def result(**fields: object) -> SendResult:
            elapsed = (time.perf_counter() - t0) * 1000
            return SendResult.model_validate(
                {"started_at": started_at, "duration_ms": round(elapsed, 3), **fields}
            )

        try:
            keys = self._keys(request.secret_ref)
        except UnknownSecretRefError as err:
            return result(error_kind=ErrorKind.SECRET_UNAVAILABLE, error=str(err))
        body = request.body.encode()
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": request.delivery_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(keys, request.delivery_id, timestamp, body),
        }
        try:
            async with (
                asyncio.timeout(self._timeout),
                self._http.stream("POST", request.url, content=body, headers=headers) as response,
            ):
                excerpt = await self._read_capped(response)
        except (httpx.HTTPError, TimeoutError) as err:
            return result(error_kind=error_kind_of(err), error=_describe(err))
        code = response.status_code
        fields: dict[str, object] = {"status_code": code, "response_excerpt": excerpt}
        if 300 <= code < 400:
            location = httpx.URL(response.headers.get("location", ""))
            fields |= {"error_kind": ErrorKind.REDIRECT, "error": f"redirect to {location.host}"}
        elif not 200 <= code < 300:
            fields |= {"error_kind": ErrorKind.HTTP_STATUS, "error": f"HTTP {code}"}
        if code in (429, 503):
            fields["retry_after_seconds"] = parse_retry_after(
                response.headers.get("retry-after"), datetime.now(UTC)
            )
        return result(**fields)

    def _keys(self, ref: str) -> tuple[bytes, ...]:
        if self._secrets is None:
            raise UnknownSecretRefError(ref)
        return self._secrets.keys(ref)

    async def _read_capped(self, response: httpx.Response) -> str | None:
        """Read up to MAX_RESPONSE_BYTES and keep only an excerpt; an endless body is cut."""
        received = bytearray()
        async for chunk in response.aiter_raw():
            received += chunk
            if len(received) >= MAX_RESPONSE_BYTES:
                break
        if not self._excerpt_bytes or not received:
            return None
        return bytes(received[: self._excerpt_bytes]).decode("utf-8", "replace")


def _describe(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    return text[:200]
