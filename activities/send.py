"""The send activity: resolve the endpoint, then one signed HTTP POST per attempt.

Every attempt asks the registry (through the worker's short-TTL `EndpointCache`) for the
endpoint's URL, signing secrets, settings and state, so a URL fixed by the customer, a
rotated secret or a disable applies to the next attempt of every waiting delivery.

It never raises for anything the receiver or the registry does: every outcome (status,
timeout, refused connection, disabled or deleted endpoint, unreachable database) comes
back as a `SendResult` that the workflow records and classifies. Temporal's own retries
are off; the workflow's loop is the retry policy.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from importlib.metadata import version

import httpx
from temporalio import activity

from activities.circuit_view import CircuitView
from activities.endpoint_cache import EndpointCache
from activities.safe_transport import BlockedDestinationError, DestinationPolicy, GuardedTransport
from webhooks.core.circuit import signal_of
from webhooks.core.models import ErrorKind, Gate, SendRequest, SendResult
from webhooks.core.signing import signature_header
from webhooks.registry.errors import RegistryUnavailableError, SecretKeysError
from webhooks.registry.models import EndpointState

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


@dataclass(frozen=True)
class Refusal:
    """Why an attempt cannot be sent (no request is made): recorded as a failed attempt."""

    kind: ErrorKind
    error: str


@dataclass(frozen=True)
class Target:
    """Where and how one attempt goes, as resolved from the registry."""

    url: str
    keys: tuple[bytes, ...]
    headers: Mapping[str, str]
    timeout: float


class SendActivities:
    """Holds the worker's shared HTTP client, endpoint cache and circuit view."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        endpoints: EndpointCache,
        *,
        timeout_seconds: float = 15,
        excerpt_bytes: int = 1024,
        circuit: CircuitView | None = None,
    ) -> None:
        self._circuit = circuit
        self._http = http
        self._endpoints = endpoints
        self._timeout = timeout_seconds
        self._excerpt_bytes = excerpt_bytes

    @activity.defn(name="send_webhook")
    async def send_webhook(self, request: SendRequest) -> SendResult:
        """One attempt, unless the registry refuses it (disabled, deleted, unreachable:
        no request, a failed attempt) or the endpoint's circuit holds it back (no request,
        not an attempt)."""
        started_at, t0 = datetime.now(UTC), time.perf_counter()
        target = await self._resolve(request)
        if isinstance(target, Refusal):
            elapsed = round((time.perf_counter() - t0) * 1000, 3)
            return SendResult(
                started_at=started_at,
                duration_ms=elapsed,
                error_kind=target.kind,
                error=target.error,
            )
        gated = self._circuit is not None and bool(request.endpoint_id)
        gate = await self._circuit.gate(request.endpoint_id) if self._circuit and gated else None
        if gate is not None and not gate.allow:
            now, info = datetime.now(UTC), activity.info()
            if info.is_local:
                gate = on_workflow_clock(gate, info.current_attempt_scheduled_time, now)
            return SendResult(started_at=now, duration_ms=0, gate=gate)
        result = await self._post(request, target)
        if self._circuit and gated:
            probe = gate is not None and gate.probe
            self._circuit.record(request.endpoint_id, signal_of(result), probe=probe)
        return result

    async def _resolve(self, request: SendRequest) -> Target | Refusal:
        """The endpoint's URL, keys and settings now, or why this attempt cannot be sent."""
        try:
            if request.url is not None:
                # Started before the registry: its own URL, the secrets imported for its ref.
                ref = request.secret_ref or "default"
                found = await self._endpoints.legacy(ref)
                if found is None:
                    return Refusal(
                        ErrorKind.SECRET_UNAVAILABLE,
                        f"unknown secret_ref {ref!r}: import it with `webhooks endpoint import`",
                    )
                url = request.url
            else:
                found = await self._endpoints.endpoint(request.endpoint_id)
                if found is None:
                    return Refusal(
                        ErrorKind.ENDPOINT_DELETED,
                        f"endpoint {request.endpoint_id!r} is no longer in the registry",
                    )
                if found.state is EndpointState.DISABLED:
                    return Refusal(
                        ErrorKind.ENDPOINT_DISABLED,
                        f"endpoint {request.endpoint_id!r} is disabled in the registry",
                    )
                url = found.url
        except RegistryUnavailableError as err:
            return Refusal(ErrorKind.REGISTRY_UNAVAILABLE, str(err)[:200])
        except SecretKeysError as err:
            return Refusal(ErrorKind.SECRET_UNAVAILABLE, str(err)[:200])
        if not found.keys:
            return Refusal(
                ErrorKind.SECRET_UNAVAILABLE, f"endpoint {found.id!r} has no unexpired secret"
            )
        settings = found.settings
        return Target(
            url=url,
            keys=found.keys,
            headers=settings.headers,
            timeout=settings.timeout_seconds or self._timeout,
        )

    async def _post(self, request: SendRequest, target: Target) -> SendResult:
        started_at = datetime.now(UTC)
        t0 = time.perf_counter()

        def result(**fields: object) -> SendResult:
            elapsed = (time.perf_counter() - t0) * 1000
            return SendResult.model_validate(
                {"started_at": started_at, "duration_ms": round(elapsed, 3), **fields}
            )

        body = request.body.encode()
        timestamp = int(time.time())
        headers = {
            **target.headers,  # validated never to name any of ours
            "content-type": "application/json",
            "webhook-id": request.delivery_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(
                target.keys, request.delivery_id, timestamp, body
            ),
        }
        try:
            async with (
                asyncio.timeout(target.timeout),
                self._http.stream("POST", target.url, content=body, headers=headers) as response,
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


def on_workflow_clock(gate: Gate, scheduled_at: datetime, now: datetime) -> Gate:
    """A hold's end as the workflow will time it. The workflow starts its timer from its
    own clock, the moment it scheduled this send (`workflow.now()`); a send that waited
    for a slot on a loaded worker would be held that much longer than the gate says, so
    the wait is taken off (found by the fault campaign: 10.1 s local-trip holds)."""
    waited = now - scheduled_at
    if gate.retry_at is None or waited <= timedelta(0):
        return gate
    return gate.model_copy(update={"retry_at": gate.retry_at - waited})
