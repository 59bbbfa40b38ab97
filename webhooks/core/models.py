"""The typed inputs and outputs that cross Temporal: one model per thing, JSON-friendly.

Non-Python services start `WebhookDelivery` with the JSON of `DeliveryRequest`
(`docs/contract.md` ships its schema), so durations are plain seconds and the body is the
exact JSON text that every attempt sends and signs.

Schema skew: decoded from JSON (everything that crosses Temporal), a model ignores fields
it does not know, so a publisher or worker upgraded first does not break the other (the
workflow logs what it ignored). Built in Python (`RetrySchedule(...)`, `model_validate` of
a dict, the HTTP API's bodies) an unknown field is still an error: a typo is caught at
the edge instead of silently dropped.

Defaults are part of the replay contract: an input that omits a field gets the default
every time its history replays. Never change one in place; see `DEFAULT_CHANGES`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import httpx
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)

MAX_BODY_BYTES = 256 * 1024
"""Temporal warns on payloads above 256 KB; a webhook body should be far smaller anyway."""
MAX_RAW_INPUT_BYTES = MAX_BODY_BYTES + 64 * 1024
"""How much of an unusable input its dead letter keeps (a body plus the other fields)."""

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
    model_config = ConfigDict(extra="ignore", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known_fields_only_from_python(cls, data: Any, info: ValidationInfo) -> Any:
        # From JSON (Temporal payloads) unknown fields are ignored; from Python, refused.
        if info.mode == "python" and isinstance(data, dict):
            unknown = sorted(set(data) - set(cls.model_fields))
            if unknown:
                raise ValueError(f"unknown field(s): {', '.join(map(str, unknown))}")
        return data


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


class AttemptsSummary(_Model):
    """Attempts of earlier runs no longer carried one by one (a redelivery keeps only the
    newest `MAX_CARRIED_ATTEMPTS`, so redeliveries cannot outgrow Temporal's payload limit)."""

    count: int = Field(ge=0)
    first_started_at: datetime | None = None
    last_started_at: datetime | None = None
    delivered: int = 0
    """Of them, how many got a 2xx (none, normally: a delivered run is not redelivered)."""


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
    """Attempts of earlier runs (redeliveries carry the newest of them)."""
    earlier_attempts: AttemptsSummary | None = None
    """A count of the earlier runs' attempts that `prior_attempts` no longer lists."""

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
    INVALID_INPUT = "invalid_input"
    """The workflow could not use its input (malformed, beyond the bounds, or a delivery id
    not derived from endpoint and event id); the dead letter holds the raw input."""


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
    raw_input: str | None = None
    """With reason `invalid_input`: the workflow's input as it arrived (JSON text, cut at
    `MAX_RAW_INPUT_BYTES`); `request` then holds only what could be read from it."""


DeliveryRequest.model_rebuild()


def salvaged_request(raw: object, delivery_id: str, published_at: datetime) -> DeliveryRequest:
    """A request standing for an input that could not be used: whatever valid identity it
    carries (endpoint, event, account), so its dead letter is found where operators look;
    `unknown` for the rest. The raw input goes into the dead letter beside it."""
    fields = raw if isinstance(raw, dict) else {}

    def ident(name: str, fallback: str | None = "unknown") -> str | None:
        value = fields.get(name)
        if isinstance(value, str) and _HEADER_SAFE.fullmatch(value):
            return value
        return fallback

    return DeliveryRequest(
        delivery_id=delivery_id if _HEADER_SAFE.fullmatch(delivery_id) else "unknown",
        endpoint_id=ident("endpoint_id") or "unknown",
        account_id=ident("account_id", None),
        event_id=ident("event_id") or "unknown",
        event_type=ident("event_type") or "unknown",
        body="",
        published_at=published_at,
    )


def unknown_fields(data: object, model: type[BaseModel] = DeliveryRequest) -> list[str]:
    """Dotted paths of the fields in `data` (decoded JSON) that `model` does not know and
    so ignores: `options.retry.jitter_mode`. Logged by the workflow, never an error."""
    if not isinstance(data, dict):
        return []
    found: list[str] = []
    for key, value in data.items():
        field = model.model_fields.get(str(key))
        if field is None:
            found.append(str(key))
            continue
        nested = _nested_model(field.annotation)
        if nested is not None:
            found += [f"{key}.{path}" for path in unknown_fields(value, nested)]
    return found


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    candidates = getattr(annotation, "__args__", None) or (annotation,)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


@dataclass(frozen=True)
class DefaultChange:
    """A changed default of a `DeliveryOptions` field, applied only to inputs that omit it
    and only in runs that took the `patch` (`workflow.patched`), so deliveries in flight
    keep replaying with the default they started with. The field's own default stays the
    old value forever. How to add one: DEVELOPING.md, "Changing a default safely"."""

    patch: str
    path: tuple[str, ...]
    """e.g. ("retry", "jitter"): the field under `DeliveryRequest.options`."""
    value: Any


DEFAULT_CHANGES: tuple[DefaultChange, ...] = ()
"""Every default changed since the wire format was published, oldest first."""


def resolve_defaults(
    request: DeliveryRequest,
    patched: Callable[[str], bool],
    changes: tuple[DefaultChange, ...] = DEFAULT_CHANGES,
) -> DeliveryRequest:
    """The request with today's defaults for the option fields it omits, decided once:
    the publisher calls it with `lambda _: True` and writes every field explicitly; the
    workflow calls it at start with `workflow.patched` (asked only for fields actually
    omitted, so inputs that name every field record no marker)."""
    for change in changes:
        *parents, name = change.path
        chain: list[BaseModel] = [request.options]
        for parent in parents:
            chain.append(getattr(chain[-1], parent))
        if name in chain[-1].model_fields_set or not patched(change.patch):
            continue
        value: Any = change.value
        for holder, key in zip(reversed(chain), reversed(change.path), strict=True):
            value = holder.model_copy(update={key: value})
        request = request.model_copy(update={"options": value})
    return request


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
