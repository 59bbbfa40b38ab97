"""Operational events: what the product tells StreamPay's own systems about itself.

When a customer's endpoint is disabled or enabled again, its circuit opens or closes, a
delivery dead-letters or a dead letter is about to expire, the worker publishes one of these
to StreamPay's operations endpoint(s): ordinary registry endpoints of the operations account
(`WEBHOOKS_OPERATIONS_ACCOUNT_ID`) subscribed to these types, delivered by the same signed,
retried `WebhookDelivery` as any webhook, so StreamPay can e-mail the customer. Never sent to
the customer, and never about an operations endpoint itself (no event loops).

Each type's `data` is a registered model (`webhooks.core.events`): ids, times, counts and
fixed words only; no URL, body or response. The schemas are in docs/operations.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from webhooks.core.circuit import CircuitPhase, CircuitSnapshot
from webhooks.core.events import EVENT_TYPES, EventData, Timestamp, register_event
from webhooks.core.models import DeadLetterReason, HeaderSafe

OperationalType = Literal[
    "endpoint.disabled",
    "endpoint.enabled",
    "circuit.opened",
    "circuit.closed",
    "delivery.dead_lettered",
    "dead_letter.expiring",
]
TYPES: tuple[str, ...] = get_args(OperationalType)
ENDPOINT_DISABLED: OperationalType = "endpoint.disabled"
ENDPOINT_ENABLED: OperationalType = "endpoint.enabled"
CIRCUIT_OPENED: OperationalType = "circuit.opened"
CIRCUIT_CLOSED: OperationalType = "circuit.closed"
DELIVERY_DEAD_LETTERED: OperationalType = "delivery.dead_lettered"
DEAD_LETTER_EXPIRING: OperationalType = "dead_letter.expiring"

EXPIRY_WARNING_SECONDS = 3 * 86400.0
"""Default warning period before a dead letter expires (`dead_letter.expiring`)."""
PATCH = "operational-events"
"""`workflow.patched` name: workflows started before these events replay without them."""

Ref = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$")]
"""An id as the product or a publisher made it (printable ASCII, no spaces)."""
EventType = HeaderSafe
"""As the delivery request's: any event type a delivery may carry can be reported (a
stricter rule here would fail the dead letter that reports it)."""
Reason = Annotated[str, Field(max_length=200)]


class _Subject(EventData):
    endpoint_id: Ref
    account_id: Ref | None = None
    """The customer account owning the endpoint (filled in by the worker from the registry)."""


@register_event(ENDPOINT_DISABLED)
class EndpointDisabled(_Subject):
    """The endpoint was disabled: its deliveries now go to the dead-letter queue unsent."""

    automatic: bool
    """True when the circuit disabled it (failing for days, or 410 Gone); False for an operator."""
    reason: Reason
    disabled_at: Timestamp
    failing_since: Timestamp | None = None


@register_event(ENDPOINT_ENABLED)
class EndpointEnabled(_Subject):
    """The endpoint was enabled again (its dead letters can now be redelivered)."""

    enabled_at: Timestamp


@register_event(CIRCUIT_OPENED)
class CircuitOpened(_Subject):
    """The endpoint's circuit opened: deliveries wait, one probe per cooldown."""

    opened_at: Timestamp
    failure_rate: float = Field(ge=0, le=1)
    requests_in_window: int = Field(ge=0)
    next_probe_at: Timestamp | None = None


@register_event(CIRCUIT_CLOSED)
class CircuitClosed(_Subject):
    """A probe succeeded: the endpoint is healthy again and waiting deliveries go."""

    closed_at: Timestamp


@register_event(DELIVERY_DEAD_LETTERED)
class DeliveryDeadLettered(_Subject):
    """A delivery gave up and is parked in the dead-letter queue."""

    delivery_id: Ref
    dead_letter_id: Ref
    event_id: Ref
    event_type: EventType
    reason: DeadLetterReason
    attempts: int = Field(ge=0)
    dead_lettered_at: Timestamp
    expires_at: Timestamp


@register_event(DEAD_LETTER_EXPIRING)
class DeadLetterExpiring(_Subject):
    """A dead letter nobody acted on closes (and its payload goes) at `expires_at`."""

    delivery_id: Ref
    dead_letter_id: Ref
    event_type: EventType
    reason: DeadLetterReason
    expires_at: Timestamp


class OperationalEvent(BaseModel):
    """What a workflow asks the worker to publish (the `publish_operational_event` input).

    `event_id` is derived from the workflow that emits it, so a retried activity publishes
    the same event (one delivery per operations endpoint), never a second one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_type: OperationalType
    event_id: Ref
    data: dict[str, Any]

    @property
    def endpoint_id(self) -> str:
        return str(self.data["endpoint_id"])


class OperationalConfig(BaseModel):
    """The worker's answer to the workflows that emit events (recorded in their history)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool
    expiry_warning_seconds: float = EXPIRY_WARNING_SECONDS


def event(event_type: OperationalType, event_id: str, data: EventData) -> OperationalEvent:
    return OperationalEvent(
        event_type=event_type,
        event_id=event_id,
        data=data.model_dump(mode="json", exclude_none=True),
    )


def circuit_event(
    old: CircuitPhase,
    s: CircuitSnapshot,
    now: datetime,
    *,
    event_id: str,
    by_operator: bool,
) -> OperationalEvent | None:
    """The event of a circuit's phase change, if it is one StreamPay is told about
    (not open <-> half-open: that is the circuit probing)."""
    new = s.phase
    if new is CircuitPhase.DISABLED:
        data: EventData = EndpointDisabled(
            endpoint_id=s.endpoint_id,
            automatic=not by_operator,
            reason=(s.disabled_reason or "disabled")[:200],
            disabled_at=now,
            failing_since=s.failing_since,
        )
        return event(ENDPOINT_DISABLED, event_id, data)
    if old is CircuitPhase.DISABLED:
        return event(
            ENDPOINT_ENABLED, event_id, EndpointEnabled(endpoint_id=s.endpoint_id, enabled_at=now)
        )
    if new is CircuitPhase.OPEN and old is CircuitPhase.CLOSED:
        data = CircuitOpened(
            endpoint_id=s.endpoint_id,
            opened_at=s.opened_at or now,
            failure_rate=s.failure_rate(),
            requests_in_window=s.requests_in_window(),
            next_probe_at=s.next_probe_at,
        )
        return event(CIRCUIT_OPENED, event_id, data)
    if new is CircuitPhase.CLOSED:
        return event(
            CIRCUIT_CLOSED, event_id, CircuitClosed(endpoint_id=s.endpoint_id, closed_at=now)
        )
    return None


def json_schema() -> dict[str, Any]:
    """The JSON Schema of an operational event as the operations endpoint receives it (the
    Standard Webhooks payload: `id`, `type`, `timestamp`, `data`), one branch per type;
    committed as docs/schema/operational-events.json."""
    mode: JsonSchemaMode = "validation"
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [(EVENT_TYPES[t], mode) for t in TYPES]
    refs, top = models_json_schema(models, ref_template="#/$defs/{model}")
    branches = [
        {
            "type": "object",
            "properties": {
                "id": {"type": "string", "description": "The event id (dedupe on webhook-id)."},
                "type": {"const": t},
                "timestamp": {"type": "string", "format": "date-time"},
                "data": refs[(EVENT_TYPES[t], mode)],
            },
            "required": ["id", "type", "timestamp", "data"],
            "additionalProperties": False,
        }
        for t in TYPES
    ]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "StreamPay webhooks operational event",
        "oneOf": branches,
        "$defs": top["$defs"],
    }
