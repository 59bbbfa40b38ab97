"""Deliveries on Temporal's visibility and queries: find, count, inspect, retry now."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus

from webhooks.core import search_attributes as sa
from webhooks.core.filters import DeliveryFilter
from webhooks.core.models import Attempt, DeliveryRequest, DeliveryState, DeliveryStatus
from webhooks.core.names import DELIVERY_WORKFLOW
from webhooks.ops.errors import ConflictError, ensure_type
from webhooks.ops.paging import Page, fetch_page

__all__ = ["DeliveryFilter"]


@dataclass(frozen=True)
class DeliveryRow:
    delivery_id: str
    run_id: str | None
    endpoint_id: str | None
    event_type: str | None
    state: str | None
    attempts: int | None
    last_status_code: int | None
    next_attempt_at: datetime | None
    started_at: datetime


@dataclass(frozen=True)
class DeliveryDetail:
    status: DeliveryStatus
    attempts: list[Attempt]
    request: DeliveryRequest | None
    """The workflow input (URL, event id, body); None if it cannot be decoded here."""
    running: bool


def _row(wf: WorkflowExecution) -> DeliveryRow:
    attrs = wf.typed_search_attributes
    return DeliveryRow(
        delivery_id=wf.id,
        run_id=wf.run_id,
        endpoint_id=attrs.get(sa.ENDPOINT_ID),
        event_type=attrs.get(sa.EVENT_TYPE),
        state=attrs.get(sa.STATUS),
        attempts=attrs.get(sa.ATTEMPTS),
        last_status_code=attrs.get(sa.LAST_STATUS_CODE),
        next_attempt_at=attrs.get(sa.NEXT_ATTEMPT_AT),
        started_at=wf.start_time,
    )


async def delivery_page(
    client: Client, where: DeliveryFilter, *, page_size: int = 50, cursor: str | None = None
) -> Page[DeliveryRow]:
    return await fetch_page(client, where.query(), _row, page_size=page_size, cursor=cursor)


async def count_by_state(client: Client, since: datetime) -> dict[str, int]:
    """Deliveries started since `since`, per state (server-side counts, one per state)."""
    states = list(DeliveryState)
    counts = await asyncio.gather(
        *(
            client.count_workflows(DeliveryFilter(state=state, since=since).query())
            for state in states
        )
    )
    return {state.value: c.count for state, c in zip(states, counts, strict=True)}


async def get_delivery(client: Client, delivery_id: str) -> DeliveryDetail:
    """The latest run of a delivery: its status and attempt table (queries) and its input."""
    handle = client.get_workflow_handle(delivery_id)
    await ensure_type(handle, DELIVERY_WORKFLOW, "delivery")
    status, attempts, described = await asyncio.gather(
        handle.query("status", result_type=DeliveryStatus),
        handle.query("attempts", result_type=list[Attempt]),
        handle.describe(),
    )
    return DeliveryDetail(
        status=status,
        attempts=attempts,
        request=await _input(client, delivery_id),
        running=described.status == WorkflowExecutionStatus.RUNNING,
    )


async def _input(client: Client, delivery_id: str) -> DeliveryRequest | None:
    first = await anext(client.get_workflow_handle(delivery_id).fetch_history_events())
    payloads = first.workflow_execution_started_event_attributes.input.payloads
    try:
        [request] = await client.data_converter.decode(payloads, [DeliveryRequest])
    except Exception:
        # Encrypted under a key this process lacks: show the rest.
        return None
    return request if isinstance(request, DeliveryRequest) else None


async def retry_now(client: Client, delivery_id: str) -> None:
    """Signal `retry_now`; `ConflictError` if the delivery has finished."""
    handle = client.get_workflow_handle(delivery_id)
    await ensure_type(handle, DELIVERY_WORKFLOW, "delivery")
    described = await handle.describe()
    if described.status != WorkflowExecutionStatus.RUNNING:
        raise ConflictError(f"delivery {delivery_id!r} has finished; redeliver its dead letter")
    await handle.signal("retry_now")
