"""The console, the management API and the codec endpoint, over real HTTP against the real
dev server (and, in test_browser.py, real Chromium)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC

import httpx
from temporalio.client import Client

from tests.conftest import EndpointPublisher
from webhooks.config import Settings
from webhooks.core.filters import DeadLetterFilter
from webhooks.core.models import DeliveryState, RetrySchedule
from webhooks.core.roles import Role
from webhooks.server.app import serve_console
from webhooks.server.settings import ConsoleSettings
from workflows.delivery import WebhookDelivery

BOUND_SECONDS = 60.0
"""Upper bound for anything a test waits for; a hang fails the test instead of the suite."""

PASSWORDS = {
    "ada": ("ada-admin-password", Role.ADMIN),
    "otto": ("otto-operator-password", Role.OPERATOR),
    "vera": ("vera-viewer-password", Role.VIEWER),
}
"""name -> (password, role): the console's test users."""


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def csrf_of(html: str) -> str:
    """The CSRF token a page's forms carry."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


async def sign_in(http: httpx.AsyncClient, name: str) -> str:
    """Sign `name` in on this client (its cookie jar keeps the session); returns the CSRF
    token of the new session."""
    form = await http.get("/login")
    password = PASSWORDS[name][0]
    response = await http.post(
        "/login",
        data={"username": name, "password": password, "csrf_token": csrf_of(form.text)},
    )
    assert response.status_code == 303, response.text
    return csrf_of((await http.get("/")).text)


@asynccontextmanager
async def running_console(
    backend: Settings, console: ConsoleSettings, client: Client
) -> AsyncIterator[str]:
    """A console on a free port of 127.0.0.1 for the block; yields its base URL."""
    stop, ready, said = asyncio.Event(), asyncio.Event(), list[str]()

    def announce(message: str) -> None:
        said.append(message)
        ready.set()

    task = asyncio.create_task(
        serve_console(backend, console, stop, port=0, announce=announce, client=client)
    )
    try:
        async with asyncio.timeout(30):
            await ready.wait()
        yield said[0].split()[-1]
    finally:
        stop.set()
        await task


async def dead_letters(
    client: Client,
    publisher: EndpointPublisher,
    url: str,
    endpoint: str,
    count: int,
    *,
    event_type: str = "console.test",
    data: dict[str, object] | None = None,
) -> list[str]:
    """Publish `count` events that the receiver at `url` fails once each (one attempt);
    return their dead letters' ids, once all of them are listed as open."""

    async def one(index: int) -> str:
        delivery_id = await publisher.publish(
            endpoint_id=endpoint,
            url=url,
            event_type=event_type,
            data=data or {"n": index},
            event_id=unique("evt"),
            retry=RetrySchedule(schedule_seconds=[0], jitter=0, throttled_min_seconds=0),
        )
        handle = client.get_workflow_handle_for(WebhookDelivery.run, delivery_id)
        result = await handle.result()
        assert result.state is DeliveryState.DEAD_LETTERED
        assert result.dead_letter_id is not None
        return result.dead_letter_id

    async with asyncio.timeout(BOUND_SECONDS * 4):
        ids = list(await asyncio.gather(*(one(i) for i in range(count))))
        where = DeadLetterFilter(endpoint_id=endpoint)
        listed = 0
        while listed < count:  # visibility lags a little behind the workflows
            await asyncio.sleep(0.2)
            listed = (await client.count_workflows(where.query())).count
    return ids


async def signalled_at(client: Client, workflow_ids: list[str], signal: str) -> list[float]:
    """When the server took each workflow's first `signal` (epoch seconds, from its history):
    the pace a sender kept, without the worker's queue that the sends pass through after."""

    async def one(workflow_id: str) -> float:
        async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
            attributes = event.workflow_execution_signaled_event_attributes
            if event.HasField("workflow_execution_signaled_event_attributes") and (
                attributes.signal_name == signal
            ):
                return event.event_time.ToDatetime(tzinfo=UTC).timestamp()
        raise AssertionError(f"{workflow_id} has no {signal!r} signal")

    return list(await asyncio.gather(*(one(i) for i in workflow_ids)))


def most_in_one_second(times: list[float], window: float = 1.0) -> int:
    """The most events inside any window of `window` seconds (sliding, not buckets)."""
    ordered, most, start = sorted(times), 0, 0
    for end, moment in enumerate(ordered):
        while moment - ordered[start] >= window:
            start += 1
        most = max(most, end - start + 1)
    return most
