"""`POST /api/v1/events`: publishing for StreamPay services that are not written in Python.

It needs the `operator` role: publishing makes the product send HTTP to a customer, the
same reach as a redelivery, and reveals no payload or secret (`admin`'s). The answer is the
publisher's own record of each delivery, serialized as it is: `created` false means the same
event id reached that endpoint before and nothing new started, so a service may simply
repeat a request whose answer it did not get.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field

from webhooks.core.roles import Role
from webhooks.ops import events
from webhooks.publisher import Published
from webhooks.server.api import errors
from webhooks.server.auth import Principal
from webhooks.server.context import ConsoleContext, context
from webhooks.server.deps import api_role

router = APIRouter(prefix="/api/v1")
Operator = Annotated[Principal, Depends(api_role(Role.OPERATOR))]
Ctx = Annotated[ConsoleContext, Depends(context)]


class PublishedOut(BaseModel):
    deliveries: list[Published] = Field(
        description="One per endpoint the event goes to (none when no endpoint subscribes)."
    )


@router.post(
    "/events",
    status_code=202,
    response_model=PublishedOut,
    responses={
        200: {"model": PublishedOut, "description": "Nothing new: every delivery existed."},
        **errors(404, 409),
    },
)
async def publish_event(
    body: events.PublishRequest, who: Operator, ctx: Ctx, response: Response
) -> PublishedOut:
    """Publish one event to one endpoint or to an account's subscribed endpoints: 202 when a
    delivery started, 200 when all of them already existed. 404 unknown endpoint, 409
    disabled or another account's, 400 a type the endpoint does not take, 422 invalid data."""
    published = await events.publish(ctx.publisher, body)
    if not any(p.created for p in published):
        response.status_code = 200
    return PublishedOut(deliveries=published)
