"""The bulk dead-letter job's I/O: count the matching entries, and signal the next batch at
the job's rate, heartbeating each one so a retried batch resumes where it stopped."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from temporalio import activity
from temporalio.client import Client, RPCError
from temporalio.service import RPCStatusCode

from webhooks.core.bulk import BatchOutcome, BulkAction, BulkBatch
from webhooks.core.models import DiscardRequest, RedeliverRequest
from webhooks.core.visibility import quote

_HEARTBEAT_EVERY = 10


class BulkActivities:
    def __init__(self, client: Client) -> None:
        self._client = client

    @activity.defn(name="count_dead_letters")
    async def count_dead_letters(self, batch: BulkBatch) -> int:
        """How many entries the job will visit (for its progress)."""
        request, progress = batch.request, batch.progress
        if request.ids is not None:
            return len(request.ids)
        assert request.filter is not None
        assert progress.started_at is not None
        query = request.filter.visibility(progress.started_at).query()
        return (await self._client.count_workflows(query)).count

    @activity.defn(name="signal_dead_letters")
    async def signal_dead_letters(self, batch: BulkBatch) -> BatchOutcome:
        """Signal up to `batch.size` entries, one every 1/rate seconds after the last one.

        Pacing from the previous send (never catching up after a stall) keeps the endpoint
        at the rate. A dead letter ignores a second action, and heartbeats record which ids
        this batch already signalled, so a retried batch does not signal them again.
        """
        request, progress = batch.request, batch.progress
        details = activity.info().heartbeat_details
        done: list[str] = list(details[0]) if details else []
        targets, outcome = await self._targets(batch)
        signal_arg = (
            RedeliverRequest(requested_by=request.requested_by)
            if request.action is BulkAction.REDELIVER
            else DiscardRequest(requested_by=request.requested_by, reason=request.note)
        )
        interval = timedelta(seconds=1 / request.per_second)
        last = progress.last_sent_at
        signalled, closed, failures = 0, 0, dict[str, str]()
        for index, dead_letter_id in enumerate(targets):
            if dead_letter_id in done:
                signalled += 1
                continue
            if last is not None:
                wait = (last + interval - datetime.now(UTC)).total_seconds()
                if wait > 0:
                    await asyncio.sleep(wait)
            last = datetime.now(UTC)
            try:
                await self._client.get_workflow_handle(dead_letter_id).signal(
                    request.action.value, signal_arg
                )
                signalled += 1
            except RPCError as err:
                if err.status == RPCStatusCode.NOT_FOUND:
                    closed += 1
                else:
                    failures[dead_letter_id] = err.message[:200]
            done.append(dead_letter_id)
            if index % _HEARTBEAT_EVERY == 0:
                activity.heartbeat(done)
        return outcome.model_copy(
            update={
                "signalled": signalled,
                "already_closed": closed,
                "failures": failures,
                "last_sent_at": last,
            }
        )

    async def _targets(self, batch: BulkBatch) -> tuple[list[str], BatchOutcome]:
        """The next ids after the job's position, and the position after them."""
        request, progress = batch.request, batch.progress
        if request.ids is not None:
            chosen = request.ids[progress.offset : progress.offset + batch.size]
            offset = progress.offset + len(chosen)
            return chosen, BatchOutcome(offset=offset, exhausted=offset >= len(request.ids))
        assert request.filter is not None
        assert progress.started_at is not None
        query = request.filter.visibility(progress.started_at).query()
        if progress.cursor is not None:
            # Visibility may keep finer times than Python: `<` the next microsecond.
            after = progress.cursor + timedelta(microseconds=1)
            query += f" AND StartTime<{quote(after.isoformat())}"
        skip = set(progress.boundary)
        chosen, times = [], []
        async for wf in self._client.list_workflows(
            query, page_size=batch.size + len(skip), limit=batch.size + len(skip)
        ):
            if wf.id in skip:
                continue
            chosen.append(wf.id)
            times.append(wf.start_time)
            if len(chosen) == batch.size:
                break
        if not chosen:
            return [], BatchOutcome(
                cursor=progress.cursor, boundary=progress.boundary, exhausted=True
            )
        cursor = times[-1]
        boundary = [i for i, t in zip(chosen, times, strict=True) if t == cursor]
        if cursor == progress.cursor:
            boundary += progress.boundary
        return chosen, BatchOutcome(cursor=cursor, boundary=boundary)
