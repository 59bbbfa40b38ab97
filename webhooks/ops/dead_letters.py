"""Dead-letter queue operations on Temporal's own visibility: find, count, act on one (bulk
actions are the `BulkDeadLetterAction` job, `webhooks.ops.bulk`).

The queue is not a separate store: every open dead letter is a running `DeadLetter`
workflow with `WebhookStatus='dead_lettered'`, so these are visibility queries and signals,
and operators with only Temporal's tools can do the same (`docs/operations.md`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime

from temporalio.client import Client, RPCError, WorkflowExecution
from temporalio.service import RPCStatusCode

from webhooks.core import search_attributes as sa
from webhooks.core.filters import DeadLetterFilter
from webhooks.core.models import (
    DeadLetterReason,
    DeadLetterState,
    DeadLetterView,
    DiscardRequest,
    RedeliverRequest,
)
from webhooks.core.names import DEAD_LETTER_WORKFLOW
from webhooks.core.policy import schedule_problems
from webhooks.ops.errors import ConflictError, ensure_type
from webhooks.ops.paging import Page, fetch_page

__all__ = ["DeadLetterFilter", "DeadLetterRow"]


@dataclass(frozen=True)
class DeadLetterRow:
    dead_letter_id: str
    endpoint_id: str | None
    event_type: str | None
    reason: str | None
    state: str | None
    dead_lettered_at: datetime


async def list_dead_letters(
    client: Client, where: DeadLetterFilter, limit: int | None = None
) -> list[DeadLetterRow]:
    return [_row(wf) async for wf in client.list_workflows(where.query(), limit=limit)]


def count_by_reason(rows: list[DeadLetterRow]) -> dict[str, int]:
    """Most frequent reason first; ties by name, so the output is stable."""
    counts = Counter(row.reason or "unknown" for row in rows)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


async def count_open_by_reason(
    client: Client, where: DeadLetterFilter, *, zeros: bool = False
) -> dict[str, int]:
    """Server-side counts per reason (no listing), for alerting on open dead letters;
    reasons with none are left out unless `zeros`."""
    counts: dict[str, int] = {}
    for reason in DeadLetterReason:
        scoped = replace(where, reason=reason, state=DeadLetterState.OPEN)
        count = (await client.count_workflows(scoped.query())).count
        if count or zeros:
            counts[reason.value] = count
    return counts


def _row(wf: WorkflowExecution) -> DeadLetterRow:
    attrs = wf.typed_search_attributes
    return DeadLetterRow(
        dead_letter_id=wf.id,
        endpoint_id=attrs.get(sa.ENDPOINT_ID),
        event_type=attrs.get(sa.EVENT_TYPE),
        reason=attrs.get(sa.DEAD_LETTER_REASON),
        state=attrs.get(sa.STATUS),
        dead_lettered_at=wf.start_time,
    )


async def dead_letter_page(
    client: Client, where: DeadLetterFilter, *, page_size: int = 50, cursor: str | None = None
) -> Page[DeadLetterRow]:
    return await fetch_page(client, where.query(), _row, page_size=page_size, cursor=cursor)


async def get_dead_letter(client: Client, dead_letter_id: str) -> DeadLetterView:
    """The dead letter's `entry` query; `NotFoundError` when there is no such dead letter."""
    handle = client.get_workflow_handle(dead_letter_id)
    await ensure_type(handle, DEAD_LETTER_WORKFLOW, "dead letter")
    view: DeadLetterView = await handle.query("entry", result_type=DeadLetterView)
    return view


async def act_on(
    client: Client, dead_letter_id: str, request: RedeliverRequest | DiscardRequest
) -> DeadLetterView:
    """Redeliver or discard one dead letter; `ConflictError` if it is no longer open or
    is an invalid input (nothing to redeliver), ValueError if the new schedule is beyond
    the bounds a delivery must keep (`webhooks.core.policy.schedule_problems`)."""
    view = await get_dead_letter(client, dead_letter_id)
    if view.state is not DeadLetterState.OPEN:
        raise ConflictError(f"dead letter {dead_letter_id!r} is already {view.state.value}")
    if isinstance(request, RedeliverRequest):
        if view.entry.reason is DeadLetterReason.INVALID_INPUT:
            raise ConflictError(
                f"dead letter {dead_letter_id!r} holds an input that is not a delivery: "
                "publish the event again correctly, then discard this one"
            )
        if request.retry is not None and (problems := schedule_problems(request.retry)):
            raise ValueError("redelivery refused: " + "; ".join(problems))
    signal = "redeliver" if isinstance(request, RedeliverRequest) else "discard"
    try:
        await client.get_workflow_handle(dead_letter_id).signal(signal, request)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise ConflictError(f"dead letter {dead_letter_id!r} closed meanwhile") from None
        raise
    return view
