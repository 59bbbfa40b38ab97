"""The management API for StreamPay's backend and for scripts: deliveries, dead letters and
bulk jobs (JSON, bearer tokens with the console's roles, cursor pagination).

Errors are JSON `{"detail": ...}`: 400 bad cursor or query, 401 no or unknown token, 403 role
too low (or a browser session without its CSRF token), 404 no such thing, 409 not in a state
that allows it, 422 invalid fields, 503 Temporal or the registry unreachable (or no worker
running to answer a query).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field

from webhooks.core.bulk import BulkAction, BulkFilter, BulkProgress, BulkRequest
from webhooks.core.filters import DeadLetterFilter, DeliveryFilter
from webhooks.core.models import (
    Attempt,
    DeadLetterReason,
    DeadLetterState,
    DeliveryState,
    DeliveryStatus,
    DiscardRequest,
    RedeliverRequest,
)
from webhooks.core.roles import Role
from webhooks.ops import bulk, dead_letters, deliveries
from webhooks.server.auth import Principal
from webhooks.server.context import ConsoleContext, context
from webhooks.server.deps import api_role


class Error(BaseModel):
    detail: str


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error answers a route documents: 400, 401, 403 and 503 (Temporal or the
    registry unreachable, or no worker to answer a query) on every route, plus `codes`."""
    return {code: {"model": Error} for code in (400, 401, 403, 503, *codes)}


router = APIRouter(prefix="/api/v1", responses=errors())
Viewer = Annotated[Principal, Depends(api_role(Role.VIEWER))]
Operator = Annotated[Principal, Depends(api_role(Role.OPERATOR))]
Ctx = Annotated[ConsoleContext, Depends(context)]
Limit = Annotated[int, Query(ge=1, le=200, description="Page size.")]
Cursor = Annotated[
    str | None, Query(max_length=4096, description="`next_cursor` of the last page.")
]
Text = Annotated[str | None, Query(max_length=200)]


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _text(value: str | None) -> str | None:
    return value.strip() or None if value else None


class DeliveryItem(BaseModel):
    delivery_id: str
    endpoint_id: str | None
    event_type: str | None
    state: str | None
    attempts: int | None
    last_status_code: int | None
    next_attempt_at: datetime | None
    started_at: datetime


class DeliveryList(BaseModel):
    items: list[DeliveryItem]
    next_cursor: str | None


class DeliveryRequestOut(BaseModel):
    event_id: str
    url: str | None = Field(
        description="Only for deliveries started before the registry; others send to their "
        "endpoint's current URL (`GET /api/v1/endpoints/{endpoint_id}`)."
    )
    published_at: datetime
    generation: int
    body: str | None = Field(description="The payload; only for roles allowed to see payloads.")


class DeliveryOut(BaseModel):
    status: DeliveryStatus
    attempts: list[Attempt]
    running: bool
    request: DeliveryRequestOut | None


class Accepted(BaseModel):
    id: str
    action: str


class DeadLetterItem(BaseModel):
    dead_letter_id: str
    endpoint_id: str | None
    event_type: str | None
    reason: str | None
    state: str | None
    dead_lettered_at: datetime


class DeadLetterList(BaseModel):
    items: list[DeadLetterItem]
    next_cursor: str | None


class DeadLetterOut(BaseModel):
    dead_letter_id: str
    state: DeadLetterState
    reason: DeadLetterReason
    detail: str | None
    dead_lettered_at: datetime
    delivery_id: str
    endpoint_id: str
    event_type: str
    event_id: str
    url: str | None = Field(
        description="Only for deliveries started before the registry; others send to their "
        "endpoint's current URL (`GET /api/v1/endpoints/{endpoint_id}`)."
    )
    attempts: list[Attempt]
    acted_by: str | None
    acted_at: datetime | None
    note: str | None
    redelivery_id: str | None
    body: str | None = Field(description="The payload; only for roles allowed to see payloads.")


class DiscardIn(BaseModel):
    reason: str = Field(default="", max_length=2000)


class BulkIn(BaseModel):
    action: BulkAction
    filter: BulkFilter | None = None
    ids: list[Annotated[str, Field(min_length=1, max_length=1000)]] | None = Field(
        default=None, min_length=1, max_length=1000
    )
    per_second: float = Field(default=10, ge=0.1, le=200)
    note: str = Field(default="", max_length=2000)


class JobOut(BaseModel):
    job_id: str
    progress: BulkProgress


@router.get("/deliveries", response_model=DeliveryList)
async def list_deliveries(
    who: Viewer,
    ctx: Ctx,
    endpoint_id: Text = None,
    event_type: Text = None,
    state: DeliveryState | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> DeliveryList:
    where = DeliveryFilter(
        endpoint_id=_text(endpoint_id),
        event_type=_text(event_type),
        state=state,
        since=_utc(since),
        until=_utc(until),
    )
    page = await deliveries.delivery_page(ctx.temporal, where, page_size=limit, cursor=cursor)
    items = [DeliveryItem.model_validate(row, from_attributes=True) for row in page.items]
    return DeliveryList(items=items, next_cursor=page.next_cursor)


@router.get("/deliveries/{delivery_id}", response_model=DeliveryOut, responses=errors(404))
async def get_delivery(delivery_id: str, who: Viewer, ctx: Ctx) -> DeliveryOut:
    detail = await deliveries.get_delivery(ctx.temporal, delivery_id)
    request = detail.request
    return DeliveryOut(
        status=detail.status,
        attempts=detail.attempts,
        running=detail.running,
        request=DeliveryRequestOut(
            event_id=request.event_id,
            url=request.url,
            published_at=request.published_at,
            generation=request.generation,
            body=request.body if who.may(ctx.console.payload_role) else None,
        )
        if request
        else None,
    )


@router.post(
    "/deliveries/{delivery_id}/retry",
    status_code=202,
    response_model=Accepted,
    responses=errors(404, 409),
)
async def retry_delivery(delivery_id: str, who: Operator, ctx: Ctx) -> Accepted:
    await deliveries.retry_now(ctx.temporal, delivery_id)
    await ctx.audit(who.name, "retry_now", delivery_id)
    return Accepted(id=delivery_id, action="retry_now")


@router.get("/dead-letters", response_model=DeadLetterList)
async def list_dead_letters(
    who: Viewer,
    ctx: Ctx,
    endpoint_id: Text = None,
    event_type: Text = None,
    reason: DeadLetterReason | None = None,
    state: DeadLetterState | None = DeadLetterState.OPEN,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> DeadLetterList:
    where = DeadLetterFilter(
        endpoint_id=_text(endpoint_id),
        event_type=_text(event_type),
        reason=reason,
        since=_utc(since),
        until=_utc(until),
        state=state,
    )
    page = await dead_letters.dead_letter_page(ctx.temporal, where, page_size=limit, cursor=cursor)
    items = [DeadLetterItem.model_validate(row, from_attributes=True) for row in page.items]
    return DeadLetterList(items=items, next_cursor=page.next_cursor)


@router.get("/dead-letters/{dead_letter_id}", response_model=DeadLetterOut, responses=errors(404))
async def get_dead_letter(dead_letter_id: str, who: Viewer, ctx: Ctx) -> DeadLetterOut:
    view = await dead_letters.get_dead_letter(ctx.temporal, dead_letter_id)
    entry, request = view.entry, view.entry.request
    return DeadLetterOut(
        dead_letter_id=entry.dead_letter_id,
        state=view.state,
        reason=entry.reason,
        detail=entry.detail,
        dead_lettered_at=entry.dead_lettered_at,
        delivery_id=request.delivery_id,
        endpoint_id=request.endpoint_id,
        event_type=request.event_type,
        event_id=request.event_id,
        url=request.url,
        attempts=entry.attempts,
        acted_by=view.acted_by,
        acted_at=view.acted_at,
        note=view.note,
        redelivery_id=view.redelivery_id,
        body=request.body if who.may(ctx.console.payload_role) else None,
    )


@router.post(
    "/dead-letters/{dead_letter_id}/redeliver",
    status_code=202,
    response_model=Accepted,
    responses=errors(404, 409),
)
async def redeliver(dead_letter_id: str, who: Operator, ctx: Ctx) -> Accepted:
    await dead_letters.act_on(ctx.temporal, dead_letter_id, RedeliverRequest(requested_by=who.name))
    await ctx.audit(who.name, "redeliver", dead_letter_id, after={"state": "redelivered"})
    return Accepted(id=dead_letter_id, action="redeliver")


@router.post(
    "/dead-letters/{dead_letter_id}/discard",
    status_code=202,
    response_model=Accepted,
    responses=errors(404, 409),
)
async def discard(dead_letter_id: str, body: DiscardIn, who: Operator, ctx: Ctx) -> Accepted:
    await dead_letters.act_on(
        ctx.temporal, dead_letter_id, DiscardRequest(requested_by=who.name, reason=body.reason)
    )
    after = {"state": "discarded", "note": body.reason}
    await ctx.audit(who.name, "discard", dead_letter_id, after=after)
    return Accepted(id=dead_letter_id, action="discard")


@router.post("/dead-letters/bulk", status_code=202, response_model=JobOut)
async def bulk_action(body: BulkIn, who: Operator, ctx: Ctx) -> JobOut:
    """A durable, rate-limited job over a filter or a list of ids (exactly one of them)."""
    if (body.filter is None) == (body.ids is None):
        raise HTTPException(400, "give exactly one of `filter` and `ids`")
    request = BulkRequest(
        action=body.action,
        filter=body.filter,
        ids=body.ids,
        per_second=body.per_second,
        requested_by=who.name,
        note=body.note,
    )
    job_id = await bulk.start_bulk(ctx.temporal, ctx.settings, request)
    await ctx.audit(who.name, f"bulk_{body.action.value}", job_id, after=bulk.describe(request))
    return JobOut(job_id=job_id, progress=BulkProgress())


@router.get("/jobs/{job_id}", response_model=JobOut, responses=errors(404))
async def get_job(job_id: str, who: Viewer, ctx: Ctx) -> JobOut:
    return JobOut(job_id=job_id, progress=await bulk.job_progress(ctx.temporal, job_id))


@router.post(
    "/jobs/{job_id}/cancel", status_code=202, response_model=Accepted, responses=errors(404, 409)
)
async def cancel_job(job_id: str, who: Operator, ctx: Ctx) -> Accepted:
    await bulk.cancel_job(ctx.temporal, job_id)
    await ctx.audit(who.name, "bulk_cancel", job_id)
    return Accepted(id=job_id, action="cancel")
