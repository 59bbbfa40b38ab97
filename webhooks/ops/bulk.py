"""Bulk dead-letter jobs: start one, read its progress, list them, cancel one."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from temporalio.client import Client, WorkflowExecutionStatus

from webhooks.config import Settings
from webhooks.core.bulk import BulkProgress, BulkRequest
from webhooks.core.names import BULK_WORKFLOW
from webhooks.core.visibility import quote
from webhooks.ops.errors import ConflictError, ensure_type


@dataclass(frozen=True)
class JobRow:
    job_id: str
    running: bool
    started_at: datetime


async def start_bulk(client: Client, settings: Settings, request: BulkRequest) -> str:
    """Start the job on the control queue; returns its id (the workflow id)."""
    if request.ids is None and request.filter is None:
        raise ValueError("a bulk job needs a filter or a list of ids")
    job_id = f"bulk-{request.action.value}-{uuid.uuid4().hex[:12]}"
    await client.start_workflow(
        BULK_WORKFLOW, request, id=job_id, task_queue=settings.control_queue
    )
    return job_id


def describe(request: BulkRequest) -> dict[str, object]:
    """What a job does, for the audit log."""
    return request.model_dump(mode="json", exclude={"resume"}, exclude_none=True)


async def job_progress(client: Client, job_id: str) -> BulkProgress:
    handle = client.get_workflow_handle(job_id)
    await ensure_type(handle, BULK_WORKFLOW, "bulk job")
    progress: BulkProgress = await handle.query("progress", result_type=BulkProgress)
    return progress


async def follow_job(
    client: Client,
    job_id: str,
    on_progress: Callable[[BulkProgress], None] = lambda _: None,
    *,
    every: float = 1.0,
) -> BulkProgress:
    """Wait for the job's end, reporting its progress about every `every` seconds; returns
    its final progress (`cancelled` if someone stopped it)."""
    result = asyncio.ensure_future(
        client.get_workflow_handle(job_id, result_type=BulkProgress).result()
    )
    while not result.done():
        await asyncio.wait({result}, timeout=every)
        if not result.done():
            on_progress(await job_progress(client, job_id))
    final: BulkProgress = result.result()
    on_progress(final)
    return final


async def list_jobs(client: Client, limit: int = 50) -> list[JobRow]:
    query = f"WorkflowType={quote(BULK_WORKFLOW)}"
    return [
        JobRow(wf.id, wf.status == WorkflowExecutionStatus.RUNNING, wf.start_time)
        async for wf in client.list_workflows(query, limit=limit)
    ]


async def cancel_job(client: Client, job_id: str) -> None:
    handle = client.get_workflow_handle(job_id)
    await ensure_type(handle, BULK_WORKFLOW, "bulk job")
    if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
        raise ConflictError(f"bulk job {job_id!r} has finished")
    await handle.signal("cancel")
