"""Integration tests: the real Temporal dev server, real sockets, real HTTP.

Shared helpers live here so the test modules stay about behaviour.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from standardwebhooks import Webhook
from temporalio.client import Client, WorkflowExecution, WorkflowHandle
from typer.testing import CliRunner, Result

from webhooks.cli import app
from webhooks.config import Settings
from webhooks.core.models import DeliveryResult, DeliveryState, DeliveryStatus, RetrySchedule
from webhooks.dev.receiver import ReceivedRequest
from workflows.delivery import WebhookDelivery

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]

BOUND_SECONDS = 30.0
"""Upper bound for anything a test waits for; a hang fails the test instead of the suite."""


def settled(amount: str = "1.00", settlement_id: str = "set_1") -> dict[str, str]:
    """Valid `stream.settled` data: publishing checks registered event types' data."""
    return {
        "stream_id": "st_1",
        "settlement_id": settlement_id,
        "amount": amount,
        "currency": "EUR",
        "status": "settled",
        "settled_at": "2026-11-28T12:00:00Z",
    }


def fast(*seconds: float) -> RetrySchedule:
    """An explicit, jitter-free schedule for dev-server tests: one wait per attempt."""
    return RetrySchedule(schedule_seconds=list(seconds), jitter=0, throttled_min_seconds=0)


def unique(prefix: str) -> str:
    """Ids unique per test: the dev server (and its visibility store) is shared by the session."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


async def eventually(
    probe: Callable[[], Awaitable[T]],
    until: Callable[[T], bool],
    *,
    within: float = BOUND_SECONDS,
    interval: float = 0.1,
) -> T:
    """Poll `probe` until `until(value)` holds (visibility and queries are asynchronous)."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if until(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {within} s; last value: {value!r}")
        await asyncio.sleep(interval)


async def listed(client: Client, query: str, *, expect: int = 1) -> list[WorkflowExecution]:
    """Workflows matching a visibility query, once at least `expect` of them are indexed."""

    async def probe() -> list[WorkflowExecution]:
        return [wf async for wf in client.list_workflows(query)]

    return await eventually(probe, lambda found: len(found) >= expect)


async def wait_for_state(
    handle: WorkflowHandle[WebhookDelivery, DeliveryResult], state: DeliveryState
) -> DeliveryStatus:
    """Query `status` until the delivery reports `state`."""

    async def probe() -> DeliveryStatus:
        return await handle.query(WebhookDelivery.status)

    return await eventually(probe, lambda status: status.state is state)


def verify(request: ReceivedRequest, secret: str) -> object:
    """Check a received request the way a customer would, with the `standardwebhooks` package."""
    return Webhook(secret).verify(request.body, request.headers)


class Cli:
    """Runs `webhooks ...` in-process, configured like an operator's shell.

    The CLI runs its own event loop (`asyncio.run`), so it runs in a thread while this
    test's loop keeps serving the worker."""

    def __init__(self, client: Client, settings: Settings) -> None:
        self.env = {
            "TEMPORAL_ADDRESS": client.service_client.config.target_host,
            "TEMPORAL_NAMESPACE": client.namespace,
            "WEBHOOKS_TASK_QUEUE": settings.task_queue,
            "WEBHOOKS_SECRETS_FILE": str(settings.secrets_file),
            "COLUMNS": "200",  # wide enough that tables never wrap an id
        }
        self.runner = CliRunner()

    async def __call__(self, *args: str) -> Result:
        return await asyncio.to_thread(self.runner.invoke, app, list(args), env=self.env)

    async def json(self, *args: str) -> Any:
        result = await self(*args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


@asynccontextmanager
async def worker_process(
    client: Client, settings: Settings, **extra_env: str
) -> AsyncIterator[int]:
    """A worker subprocess on the test's task queue (`webhooks worker`'s configuration from
    the environment, plus `extra_env`); yields its pid once it polls."""
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": client.namespace,
        "WEBHOOKS_TASK_QUEUE": settings.task_queue,
        "WEBHOOKS_SECRETS_FILE": str(settings.secrets_file),
        "WEBHOOKS_ALLOW_PRIVATE_DESTINATIONS": "true",
        "WEBHOOKS_HTTP_TIMEOUT_SECONDS": str(settings.http_timeout_seconds),
        "WEBHOOKS_CONNECT_TIMEOUT_SECONDS": str(settings.connect_timeout_seconds),
        "WEBHOOKS_CIRCUIT_ENABLED": str(settings.circuit_enabled).lower(),
        **extra_env,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.worker_process",
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert line.strip() == b"ready", f"worker process did not start: {line!r}"
        yield proc.pid
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
