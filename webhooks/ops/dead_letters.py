"""Dead-letter queue operations on Temporal's own visibility: find, count, and act in bulk.

The queue is not a separate store: every open dead letter is a running `DeadLetter`
workflow with `WebhookStatus='dead_lettered'`, so these are visibility queries and signals,
and operators with only Temporal's tools can do the same (`docs/operations.md`).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
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


@dataclass
class BulkSummary:
    signalled: list[str] = field(default_factory=list)
    already_closed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


async def signal_each(
    client: Client,
    ids: list[str],
    signal: str,
    arg: object,
    *,
    per_second: float,
    on_done: Callable[[str], None] = lambda _: None,
) -> BulkSummary:
    """Signal every dead letter at most `per_second` times a second.

    The rate limit protects the endpoint: a redelivery's first attempt follows its signal
    at once. Each signal waits `1 / per_second` after the previous one went out, so a slow
    call delays the rest instead of being made up for by a burst. Interrupting and
    re-running is safe: closed dead letters are not listed again, and a dead letter ignores
    a second action.
    """
    summary = BulkSummary()
    previous: float | None = None
    for workflow_id in ids:
        if previous is not None:
            delay = previous + 1 / per_second - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        previous = time.monotonic()
        try:
            await client.get_workflow_handle(workflow_id).signal(signal, arg)
            summary.signalled.append(workflow_id)
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                summary.already_closed.append(workflow_id)
            else:
                summary.failed[workflow_id] = err.message
        on_done(workflow_id)
    return summary


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
    """Redeliver or discard one dead letter; `ConflictError` if it is no longer open."""
    view = await get_dead_letter(client, dead_letter_id)
    if view.state is not DeadLetterState.OPEN:
        raise ConflictError(f"dead letter {dead_letter_id!r} is already {view.state.value}")
    signal = "redeliver" if isinstance(request, RedeliverRequest) else "discard"
    try:
        await client.get_workflow_handle(dead_letter_id).signal(signal, request)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise ConflictError(f"dead letter {dead_letter_id!r} closed meanwhile") from None
        raise
    return view
