"""The floor: the naive way to send a webhook on Temporal, to measure the product against.

One workflow per delivery, one regular activity doing the POST, started with a plain
`client.start_workflow` (no eager start). No signing, no attempt table, no search
attributes: whatever the product costs beyond this is the price of its features.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    # The sandbox re-imports this module for the workflow; httpx is only used by the activity.
    import httpx
    from temporalio.client import Client
    from temporalio.worker import Worker

FLOOR_WORKFLOW = "BenchFloor"


@dataclass(frozen=True)
class FloorPost:
    id: str
    url: str
    body: str


class FloorActivities:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    @activity.defn(name="floor_post")
    async def post(self, request: FloorPost) -> int:
        response = await self._http.post(
            request.url,
            content=request.body.encode(),
            headers={"content-type": "application/json", "webhook-id": request.id},
        )
        return response.status_code


@workflow.defn(name=FLOOR_WORKFLOW)
class FloorWorkflow:
    @workflow.run
    async def run(self, request: FloorPost) -> int:
        return await workflow.execute_activity_method(
            FloorActivities.post, request, start_to_close_timeout=timedelta(seconds=30)
        )


@asynccontextmanager
async def running_floor_worker(client: Client, task_queue: str) -> AsyncIterator[Worker]:
    async with httpx.AsyncClient(
        timeout=15, limits=httpx.Limits(max_connections=200, max_keepalive_connections=200)
    ) as http:
        activities = FloorActivities(http)
        worker = Worker(
            client, task_queue=task_queue, workflows=[FloorWorkflow], activities=[activities.post]
        )
        async with worker:
            yield worker


async def start_floor(client: Client, task_queue: str, request: FloorPost) -> None:
    await client.start_workflow(FLOOR_WORKFLOW, request, id=request.id, task_queue=task_queue)
