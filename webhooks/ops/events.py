"""Publishing for callers outside Python (`POST /api/v1/events`): one request shape, the
publisher's own validation and idempotency, its answer as it is.

    published = await publish(publisher, PublishRequest(endpoint_id="ep_1", event_type=...,
                                                        data={...}, event_id="evt_42"))

The publisher (`webhooks.publisher`) does every check the Python API does; this only chooses
between one endpoint and an account's fan-out and turns invalid input into `InvalidInputError`
(the event's model, the delivery's bounds) and a republish with other content into
`ConflictError`, so that the API can tell "your input is wrong" (422) from "that endpoint is
not there" (404), "not now" (409) and "that event id means another event" (409).
"""

from __future__ import annotations

from typing import Annotated, Any, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from webhooks.core.models import HeaderSafe, RetrySchedule
from webhooks.ops.errors import ConflictError, InvalidInputError
from webhooks.publisher import PublishConflictError, Published, WebhookPublisher
from webhooks.registry.errors import RegistryError

Id = Annotated[HeaderSafe, Field(pattern=r"^[\x21-\x7e]{1,200}$", examples=["ep_1"])]
"""Ids go into headers and workflow ids: 1-200 visible ASCII characters (`HeaderSafe`)."""


class PublishRequest(BaseModel):
    """One event, for one endpoint (`endpoint_id`) or for every enabled endpoint of an
    account that subscribes to its type (`account_id`); with both, the endpoint must be
    the account's. `event_id` is required: it is what makes a retried request harmless."""

    model_config = ConfigDict(extra="forbid")

    event_type: Id = Field(examples=["stream.settled"])
    data: dict[str, Any] = Field(description="The event's data: a JSON object.")
    event_id: Id = Field(
        description="Stable id: the same event id to the same endpoint is one delivery.",
        examples=["evt_42"],
    )
    endpoint_id: Id | None = None
    account_id: Id | None = None
    timestamp: AwareDatetime | None = Field(
        default=None, description="When the event happened (the payload's `timestamp`)."
    )
    retry: RetrySchedule | None = Field(
        default=None, description="Defaults to the endpoint's schedule, then the standard one."
    )
    dead_letter_on_4xx: bool = False

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        if self.endpoint_id is None and self.account_id is None:
            raise ValueError("give endpoint_id (with account_id: it must be theirs) or account_id")
        return self


async def publish(publisher: WebhookPublisher, request: PublishRequest) -> list[Published]:
    """Start (or find) the event's deliveries; one per endpoint, none if nobody subscribes.

    Raises what the publisher raises (registry errors: unknown or disabled endpoint, another
    account's, a type it does not take), `ConflictError` when the event id was published
    with other content, and `InvalidInputError` for data or options the delivery refuses."""
    try:
        if request.endpoint_id is not None:
            one = await publisher.publish_detailed(
                endpoint_id=request.endpoint_id,
                account_id=request.account_id,
                event_type=request.event_type,
                data=request.data,
                event_id=request.event_id,
                retry=request.retry,
                dead_letter_on_4xx=request.dead_letter_on_4xx,
                timestamp=request.timestamp,
            )
            return [one]
        assert request.account_id is not None  # _one_target
        return await publisher.publish_event_detailed(
            account_id=request.account_id,
            event_type=request.event_type,
            data=request.data,
            event_id=request.event_id,
            retry=request.retry,
            dead_letter_on_4xx=request.dead_letter_on_4xx,
            timestamp=request.timestamp,
        )
    except RegistryError:
        raise  # A ValueError too, but about the endpoint, not the input's shape.
    except PublishConflictError as err:
        raise ConflictError(str(err)) from None  # the event id is taken by other content
    except ValueError as err:  # InvalidEventError (the data), or the delivery's limits
        message = (
            "; ".join(e["msg"] for e in err.errors())
            if isinstance(err, ValidationError)
            else str(err)
        )
        error = {"loc": ["body"], "msg": message, "type": "value_error"}
        raise InvalidInputError(message, [error]) from None
