"""StreamPay's event types: what each webhook's `data` may carry, and nothing more.

Webhooks leave our infrastructure and land in customers' logs, queues and third-party
tools, so their payloads carry only what a customer needs to act: opaque ids, amounts as
decimal strings (never floats), ISO 4217 currency codes, timestamps and a status. Names,
e-mail addresses, card or bank details never go in a webhook; a customer who needs them
fetches them from StreamPay's API with its own credentials, where access is checked
and logged. Every model forbids extra fields, so adding personal data to an event is a
code change with a review, not an accident at a call site.

Publishing validates `data` against the model registered for the event type (see
`webhooks.publisher.build_request`); event types without a model pass through unchecked.
New types register with `@register_event("type.name")`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)


def _decimal_text(value: Any) -> Any:
    """Accept a Decimal or an int as well as a string; a float is refused (it may have
    already lost cents) by the string pattern that follows."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


Amount = Annotated[
    str,
    BeforeValidator(_decimal_text),
    Field(
        pattern=r"^-?(0|[1-9][0-9]{0,20})(\.[0-9]{1,18})?$",
        description="A decimal amount as a string in major units, e.g. `12.50`.",
        examples=["12.50"],
    ),
]
Currency = Annotated[
    str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code.", examples=["EUR"])
]
Id = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="An opaque StreamPay id (never a name or e-mail).",
    ),
]


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


Timestamp = Annotated[
    AwareDatetime,
    AfterValidator(_utc),
    Field(description="ISO 8601 with a zone; sent in UTC (`Z`)."),
]


class EventData(BaseModel):
    """Base of every typed event's `data`: immutable, and no field beyond those declared."""

    model_config = ConfigDict(extra="forbid", frozen=True)


EVENT_TYPES: dict[str, type[EventData]] = {}
"""The registry: event type -> the model its `data` must match."""

M = TypeVar("M", bound=type[EventData])


def register_event(event_type: str) -> Callable[[M], M]:
    """Class decorator: make `event_type`'s data validate against the decorated model."""

    def register(model: M) -> M:
        if event_type in EVENT_TYPES and EVENT_TYPES[event_type] is not model:
            raise ValueError(f"event type {event_type!r} is already registered")
        EVENT_TYPES[event_type] = model
        return model

    return register


@register_event("stream.settled")
class StreamSettled(EventData):
    """A payment stream's accrued amount was settled to the receiving account."""

    stream_id: Id
    settlement_id: Id
    amount: Amount
    currency: Currency
    status: Literal["settled", "partially_settled", "failed"]
    settled_at: Timestamp
    period_start: Timestamp | None = None
    period_end: Timestamp | None = None


@register_event("payment.tick")
class PaymentTick(EventData):
    """One increment of a running payment stream."""

    stream_id: Id
    payment_id: Id
    sequence: int = Field(ge=0)
    amount: Amount
    cumulative_amount: Amount
    currency: Currency
    status: Literal["succeeded", "failed", "pending"]
    ticked_at: Timestamp


class InvalidEventError(ValueError):
    """`data` does not match the model registered for its event type."""


def validate_event_data(event_type: str, data: Any) -> Any:
    """`data` checked against `event_type`'s model, as plain JSON values; unregistered
    types are returned unchanged. Raises InvalidEventError with every problem listed."""
    model = EVENT_TYPES.get(event_type)
    if model is None:
        return data
    if isinstance(data, BaseModel) and not isinstance(data, model):
        raise InvalidEventError(
            f"{event_type} data must be a {model.__name__}, not {type(data).__name__}"
        )
    try:
        checked = data if isinstance(data, model) else model.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'data'}: {e['msg']}" for e in err.errors()
        )
        raise InvalidEventError(f"data is not a valid {event_type} event: {problems}") from None
    return checked.model_dump(mode="json", exclude_none=True)
