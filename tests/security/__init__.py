"""Security and privacy tests: the destination guard, response handling, secrets, the
history codec and codec server, typed events, and bad input at the edges."""

from __future__ import annotations

import asyncio
import uuid

from temporalio.client import Client, WorkflowExecution

from webhooks.core.models import RetrySchedule

BOUND_SECONDS = 30.0
"""Upper bound for anything a test waits for; a hang fails the test instead of the suite."""


def fast(*seconds: float) -> RetrySchedule:
    """An explicit, jitter-free schedule for dev-server tests: one wait per attempt."""
    return RetrySchedule(schedule_seconds=list(seconds), jitter=0, throttled_min_seconds=0)


def unique(prefix: str) -> str:
    """Ids unique per test: the dev server is shared by the whole session."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


async def listed(client: Client, query: str) -> list[WorkflowExecution]:
    """Workflows matching a visibility query, polled until one is indexed (visibility lags)."""
    async with asyncio.timeout(BOUND_SECONDS):
        while True:
            found = [wf async for wf in client.list_workflows(query)]
            if found:
                return found
            await asyncio.sleep(0.1)
