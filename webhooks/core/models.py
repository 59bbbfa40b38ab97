"""The typed inputs and outputs that cross Temporal: one model per thing, JSON-friendly.

Non-Python services start `WebhookDelivery` with the JSON of `DeliveryRequest`
(`docs/contract.md` ships its schema), so durations are plain seconds and the body is the
exact JSON text that every attempt sends and signs.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated

import httpx
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

MAX_BODY_BYTES = 256 * 1024
"""Temporal warns on payloads above 256 KB; a webhook body should be far smaller anyway."""

_HEADER_SAFE = re.compile(r"^[\x21-\x7e]{1,200}$")


def _header_safe(value: str) -> str:
    """Ids end up in HTTP headers and workflow ids: visible ASCII, no spaces, at most 200."""
    if not _HEADER_SAFE.fullmatch(value):
        raise ValueError("must be 1-200 visible ASCII characters without spaces")
    return value


def _http_url(value: str) -> str:
    if any(c.isspace() for c in value):
        raise ValueError("URL must not contain whitespace")
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as err:
        raise ValueError(f"not a valid URL: {err}") from err
    if url.scheme not in ("http", "https"):
        raise ValueError(f"scheme must be http or https, not {url.scheme or 'missing'!r}")
    if not url.host:
        raise ValueError("URL has no host")
    if url.userinfo:
        raise ValueError("URL must not carry credentials; use a secret_ref to sign instead")
    return value


HeaderSafe = Annotated[str, AfterValidator(_header_safe)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetrySchedule(_Model):
    """When to try again. An explicit `schedule_seconds` wins over the exponential parameters.

    `schedule_seconds[i]` is the wait before attempt i+1 (so it starts with 0: immediately).
    The default is the Standard Webhooks example schedule: ~3 days over 10 attempts.
    """

    schedule_seconds: list[float] | None = Field(
        default=[0.0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]
    )
    initial_interval_seconds: float = Field(default=5, gt=0)
    backoff_coefficient: float = Field(default=4, ge=1)
    max_interval_seconds: float = Field(default=86400, gt=0)
    max_attempts: int | None = Field(default=None, ge=1, le=100)
    """Defaults to the schedule's length, or 10 for exponential backoff."""
    jitter: float = Field(default=0.2, ge=0, le=1)
    """Each wait is multiplied by a factor drawn uniformly from [1 - jitter, 1 + jitter]."""
    max_age_seconds: float = Field(default=4 * 86400, gt=0)
    """No attempt starts later than this after publishing; the delivery dead-letters instead."""
    retry_after_cap_seconds: float = Field(default=86400, ge=0)
    """A receiver's Retry-After is honoured up to this long."""
    throttled_min_seconds: float = Field(default=60, ge=0)
    """After a 429 or a timeout, wait at least this long (as Svix does)."""

    @model_validator(mode="after")
    def _check_schedule(self) -> RetrySchedule:
        if self.schedule_seconds is not None:
            if not self.schedule_seconds:
                raise ValueError("schedule_seconds must not be empty")
            if any(s < 0 for s in self.schedule_seconds):
                raise ValueError("schedule_seconds must not be negative")
        return self

    @property
    def attempt_budget(self) -> int:
        if self.max_attempts is not None:
            return self.max_attempts
        return len(self.schedule_seconds) if self.schedule_seconds else 10


class DeliveryOptions(_Model):
    retry: RetrySchedule = RetrySchedule()
    dead_letter_on_4xx: bool = False
    """Dead-letter at once on a 4xx other than 408/425/429 instead of retrying it."""
    dead_letter_retention_seconds: float = Field(default=30 * 86400, gt=0)
    """An unattended dead letter closes as `expired` after this long."""


class DeliveryRequest(_Model):
    """The input of `WebhookDelivery`: one event to one endpoint of the registry. Holds no
    secret and no URL: the worker resolves both from the endpoint at every attempt."""

    delivery_id: HeaderSafe
    endpoint_id: HeaderSafe
    account_id: HeaderSafe | None = None
    """The endpoint's account (a search attribute, so a customer's traffic is one query)."""
    url: HttpUrl | None = None
    """Only in deliveries started before the registry: they POST here, signed with the
    secrets of the endpoint imported for `secret_ref` (`webhooks endpoint import`)."""
    event_id: HeaderSafe
    event_type: HeaderSafe
    body: str = Field(max_length=MAX_BODY_BYTES)
    """The exact JSON text sent, and signed, on every attempt (UTF-8)."""
    secret_ref: HeaderSafe | None = None
    """Only with `url` (deliveries started before the registry); defaults to `default`."""
    published_at: datetime
    options: DeliveryOptions = DeliveryOptions()
    generation: int = Field(default=0, ge=0)
    """0 for the first run; n for the n-th redelivery from the dead-letter queue."""
    prior_attempts: list[Attempt] = []
    """Attempts of earlier runs (redeliveries carry them so the history stays whole)."""

    @model_validator(mode="before")
    @classmethod
    def _legacy_ref(cls, data: object) -> object:
        # Before the registry, a request with a url and no secret_ref signed with `default`.
        if isinstance(data, dict) and data.get("url") and not data.get("secret_ref"):
            return {**data, "secret_ref": "default"}
        return data

    @model_validator(mode="after")
    def _check_body(self) -> DeliveryRequest:
        if len(self.body.encode()) > MAX_BODY_BYTES:
            raise ValueError(f"body is larger than {MAX_BODY_BYTES} bytes")
        if self.secret_ref is not None and self.url is None:
            raise ValueError("secret_ref goes only with url (deliveries from before the registry)")
        return self

    @property
    def legacy(self) -> bool:
        """Started before the registry: the URL and the secret_ref come from the input."""
        return self.url is not None


class ErrorKind(StrEnum):
    """Why an attempt failed, when it did not get a 2xx."""

    HTTP_STATUS = "http_status"
    REDIRECT = "redirect"
    TIMEOUT = "timeout"
    CONNECT = "connect"
    DNS = "dns"
    TLS = "tls"
    PROTOCOL = "protocol"
    BLOCKED_DESTINATION = "blocked_destination"
    SECRET_UNAVAILABLE = "secret_unavailable"
    ENDPOINT_DISABLED = "endpoint_disabled"
    """The registry says the endpoint is disabled: no request was made."""
    ENDPOINT_DELETED = "endpoint_deleted"
    """The endpoint is no longer in the registry: no request was made."""
    REGISTRY_UNAVAILABLE = "registry_unavailable"
    """The registry database was unreachable for longer than the worker's cache: retried."""
    INTERNAL = "internal"


class SendRequest(_Model):
    """What the send activity needs for one attempt. It resolves the endpoint (URL, secrets,
    settings, state) from the registry itself; only requests from before the registry
    carry a `url` and a `secret_ref`."""

    delivery_id: str
    endpoint_id: str = ""
    """The registry endpoint, and the circuit that gates the send."""
    body: str
    url: str | None = None
    secret_ref: str | None = None


class Gate(_Model):
    """The endpoint circuit's answer: go, go as the probe, wait until `retry_at`, or stop."""

    allow: bool
    probe: bool = False
    disabled: bool = False
    retry_at: datetime | None = None


class SendResult(_Model):
    """What one HTTP attempt observed; the workflow classifies it with pure policy.

    With `gate` set, the circuit held the send back and no request was made: that is not
    an attempt.
    """

    started_at: datetime
    duration_ms: float
    status_code: int | None = None
    error_kind: ErrorKind | None = None
    error: str | None = None
    response_excerpt: str | None = None
    retry_after_seconds: float | None = None
    gate: Gate | None = None


class Outcome(StrEnum):
    DELIVERED = "delivered"
    RETRYABLE = "retryable"
    PERMANENT = "permanent"


class Attempt(_Model):
    """A row of the attempt table answered by the `attempts` query."""

    number: int
    started_at: datetime
    duration_ms: float
    outcome: Outcome
    status_code: int | None = None
    error_kind: ErrorKind | None = None
    error: str | None = None
    response_excerpt: str | None = None
    next_attempt_at: datetime | None = None
    generation: int = 0


class DeliveryState(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    RETRYING = "retrying"
    CIRCUIT_OPEN = "circuit_open"
    DELIVERED = "delivered"
    DEAD_LETTERED = "dead_lettered"


class DeadLetterReason(StrEnum):
    EXHAUSTED = "exhausted"
    MAX_AGE = "max_age"
    GONE = "gone"
    REJECTED = "rejected"
    BLOCKED_DESTINATION = "blocked_destination"
    ENDPOINT_DISABLED = "endpoint_disabled"
    ENDPOINT_DELETED = "endpoint_deleted"
    INTERNAL_ERROR = "internal_error"


class DeliveryStatus(_Model):
    """The answer of the `status` query: a one-line summary of a delivery."""

    delivery_id: str
    endpoint_id: str
    event_type: str
    state: DeliveryState
    attempts: int
    next_attempt_at: datetime | None = None
    last_status_code: int | None = None
    dead_letter_reason: DeadLetterReason | None = None


class DeliveryResult(_Model):
    """The result of `WebhookDelivery`: delivered, or handed to the dead-letter queue."""

    delivery_id: str
    state: DeliveryState
    attempts: int
    last_status_code: int | None = None
    dead_letter_id: str | None = None
    dead_letter_reason: DeadLetterReason | None = None


class DeadLetterEntry(_Model):
    """The input of `DeadLetter`: the request (same body bytes, no secret), every attempt of
    every run, and why it was parked."""

    dead_letter_id: str
    request: DeliveryRequest
    attempts: list[Attempt]
    reason: DeadLetterReason
    dead_lettered_at: datetime
    detail: str | None = None
    retention_seconds: float = Field(default=30 * 86400, gt=0)
    """Unattended dead letters close as `expired` after this; namespace retention then
    removes them and their payload."""


DeliveryRequest.model_rebuild()


class DeadLetterState(StrEnum):
    OPEN = "dead_lettered"
    REDELIVERED = "redelivered"
    DISCARDED = "discarded"
    EXPIRED = "expired"


class RedeliverRequest(_Model):
    """Signal `redeliver`'s optional argument: who asked, and an optional new schedule."""

    requested_by: str = "unknown"
    retry: RetrySchedule | None = None


class DiscardRequest(_Model):
    """Signal `discard`'s optional argument."""

    requested_by: str = "unknown"
    reason: str = ""


class DeadLetterView(_Model):
    """The answer of the dead letter's `entry` query and its result when it closes."""

    entry: DeadLetterEntry
    state: DeadLetterState
    acted_by: str | None = None
    acted_at: datetime | None = None
    note: str | None = None
    redelivery_id: str | None = None
    redelivery_run_id: str | None = None
