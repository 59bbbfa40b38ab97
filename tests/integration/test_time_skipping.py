"""The full default schedule (about 3 days, 10 attempts) under the time-skipping test server.

Two quirks of the test server (not of the product) shape this module:
- it knows no custom search attributes until they are added through the operator service,
  and rejects a start that sets them (`search attribute WebhookEventType is not defined`);
- it keeps an *unset* attribute as a `binary/null` payload instead of removing it, which
  `WorkflowHandle.describe()` of the Python SDK cannot decode (`fromisoformat: argument must
  be str`), so attributes are read from the raw describe response here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from itertools import pairwise

import pytest
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from tests.conftest import SECRET, EndpointPublisher
from tests.integration import BOUND_SECONDS, settled, unique, verify
from webhooks.config import Settings
from webhooks.core import search_attributes as sa
from webhooks.core.models import (
    DeadLetterReason,
    DeadLetterState,
    DeliveryResult,
    DeliveryState,
    ErrorKind,
    Outcome,
    RetrySchedule,
)
from webhooks.dev.receiver import Hang, Receiver, Respond, scripted
from worker import running_worker
from workflows.dead_letter import DeadLetter
from workflows.delivery import WebhookDelivery

DEFAULT = RetrySchedule()
JITTER = DEFAULT.jitter
WAITS = (DEFAULT.schedule_seconds or [])[1:]
"""The wait before attempts 2..10: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h."""
LONGER_THAN_ANY_DELIVERY = timedelta(seconds=DEFAULT.max_age_seconds)
SLACK = timedelta(seconds=5)
"""Workflow time also moves with the wall clock while attempts run; a few seconds at most."""


async def raw_search_attributes(client: Client, workflow_id: str) -> dict[str, object]:
    """Search attributes as JSON values, unset ones (null payloads) left out."""
    response = await client.workflow_service.describe_workflow_execution(
        DescribeWorkflowExecutionRequest(
            namespace=client.namespace, execution=WorkflowExecution(workflow_id=workflow_id)
        )
    )
    fields = response.workflow_execution_info.search_attributes.indexed_fields
    return {name: json.loads(p.data) for name, p in fields.items() if p.data}


@pytest.fixture
async def skipping_publisher(
    skipping: WorkflowEnvironment, settings: Settings, publisher: EndpointPublisher
) -> AsyncIterator[EndpointPublisher]:
    """A worker on the test server for the test's duration (queries need it too)."""
    async with running_worker(skipping.client, settings):
        yield publisher.on(skipping.client, settings.task_queue)


async def deliver_under_skipped_time(
    env: WorkflowEnvironment, publisher: EndpointPublisher, receiver: Receiver
) -> tuple[str, DeliveryResult]:
    """Publish with the default schedule and let up to the maximum age pass."""
    delivery_id = await publisher.publish(
        endpoint_id=unique("ep_skip"),
        url=receiver.url,
        event_type="stream.settled",
        data=settled("3.00"),
    )
    # Sleeping on the test server fires every timer due in the meantime, in order.
    await asyncio.wait_for(env.sleep(LONGER_THAN_ANY_DELIVERY), BOUND_SECONDS)
    handle = env.client.get_workflow_handle_for(WebhookDelivery.run, delivery_id)
    return delivery_id, await asyncio.wait_for(handle.result(), BOUND_SECONDS)


async def timer_waits(env: WorkflowEnvironment, workflow_id: str) -> list[float]:
    """The durations of the backoff timers the workflow started, from its history."""
    history = await env.client.get_workflow_handle(workflow_id).fetch_history()
    return [
        e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta().total_seconds()
        for e in history.events
        if e.HasField("timer_started_event_attributes")
    ]


def assert_jittered(waits: list[float], expected: list[float]) -> None:
    assert len(waits) == len(expected)
    for wait, base in zip(waits, expected, strict=True):
        assert base * (1 - JITTER) <= wait <= base * (1 + JITTER), (wait, base)
    assert waits != expected  # jitter was applied, drawn from workflow.random()


async def test_full_default_schedule_ends_dead_lettered_after_about_three_days(
    skipping: WorkflowEnvironment, skipping_publisher: EndpointPublisher
) -> None:
    async with Receiver(scripted(then=Respond(500))) as rx:
        delivery_id, result = await deliver_under_skipped_time(skipping, skipping_publisher, rx)
        handle = skipping.client.get_workflow_handle_for(WebhookDelivery.run, delivery_id)
        attempts = await handle.query(WebhookDelivery.attempts)

    assert result.state is DeliveryState.DEAD_LETTERED
    assert result.dead_letter_reason is DeadLetterReason.EXHAUSTED
    assert result.attempts == 10
    assert len(rx.requests) == 10
    for request in rx.requests:
        verify(request, SECRET)

    assert_jittered(await timer_waits(skipping, delivery_id), WAITS)
    assert [a.number for a in attempts] == list(range(1, 11))
    assert [a.outcome for a in attempts] == [Outcome.RETRYABLE] * 10
    # Attempt n+1 ran at attempt n's next_attempt_at, so consecutive planned times are one
    # jittered wait apart.
    planned = [a.next_attempt_at for a in attempts[:-1]]
    assert attempts[-1].next_attempt_at is None
    for (earlier, later), base in zip(pairwise(planned), WAITS[1:], strict=True):
        assert earlier is not None
        assert later is not None
        spacing = later - earlier
        assert timedelta(seconds=base * (1 - JITTER)) <= spacing
        assert spacing <= timedelta(seconds=base * (1 + JITTER)) + SLACK

    attrs = await raw_search_attributes(skipping.client, delivery_id)
    assert attrs[sa.STATUS.name] == "dead_lettered"
    assert attrs[sa.ATTEMPTS.name] == 10
    assert sa.NEXT_ATTEMPT_AT.name not in attrs

    assert result.dead_letter_id is not None
    child = skipping.client.get_workflow_handle_for(DeadLetter.run, result.dead_letter_id)
    view = await child.query(DeadLetter.entry)
    assert view.state is DeadLetterState.OPEN
    assert view.entry.reason is DeadLetterReason.EXHAUSTED
    assert view.entry.attempts == attempts
    total = sum(await timer_waits(skipping, delivery_id))
    assert sum(WAITS) * (1 - JITTER) <= total <= sum(WAITS) * (1 + JITTER)  # ~3.15 days


async def test_default_schedule_delivers_on_the_seventh_attempt(
    skipping: WorkflowEnvironment, skipping_publisher: EndpointPublisher
) -> None:
    async with Receiver(scripted(*[Respond(503)] * 6)) as rx:
        delivery_id, result = await deliver_under_skipped_time(skipping, skipping_publisher, rx)

    assert result.state is DeliveryState.DELIVERED
    assert result.attempts == 7
    assert result.last_status_code == 200
    assert len(rx.requests) == 7
    assert {r.headers["webhook-id"] for r in rx.requests} == {delivery_id}
    assert_jittered(await timer_waits(skipping, delivery_id), WAITS[:6])
    attrs = await raw_search_attributes(skipping.client, delivery_id)
    assert attrs[sa.STATUS.name] == "delivered"
    assert attrs[sa.ATTEMPTS.name] == 7


# --- throttling and maximum age, decided by the workflow -----------------------------------


async def deliver_through(
    env: WorkflowEnvironment,
    publisher: EndpointPublisher,
    receiver: Receiver,
    retry: RetrySchedule,
    skip: timedelta,
) -> tuple[str, DeliveryResult]:
    delivery_id = await publisher.publish(
        endpoint_id=unique("ep_skip"),
        url=receiver.url,
        event_type="stream.settled",
        data=settled("4.00"),
        retry=retry,
    )
    await asyncio.wait_for(env.sleep(skip), BOUND_SECONDS)
    handle = env.client.get_workflow_handle_for(WebhookDelivery.run, delivery_id)
    return delivery_id, await asyncio.wait_for(handle.result(), BOUND_SECONDS)


async def test_retry_after_7200_on_a_429_waits_two_hours(
    skipping: WorkflowEnvironment, skipping_publisher: EndpointPublisher
) -> None:
    throttled = Respond(429, headers={"retry-after": "7200"})
    # The schedule alone would retry after 5 s (or the 60 s floor); Retry-After wins.
    retry = RetrySchedule(schedule_seconds=[0, 5], jitter=0)
    async with Receiver(scripted(throttled)) as rx:
        delivery_id, result = await deliver_through(
            skipping, skipping_publisher, rx, retry, timedelta(hours=3)
        )
    assert result.state is DeliveryState.DELIVERED
    assert result.attempts == 2
    [wait] = await timer_waits(skipping, delivery_id)
    assert 7200 - SLACK.total_seconds() <= wait <= 7200


async def test_a_429_or_a_timeout_waits_at_least_the_60_s_floor(
    skipping: WorkflowEnvironment, settings: Settings, publisher: EndpointPublisher
) -> None:
    # A 429 without Retry-After, a 500, a timeout, then success; the schedule says 1 s.
    settings = settings.model_copy(update={"http_timeout_seconds": 0.5})
    retry = RetrySchedule(schedule_seconds=[0, 1], jitter=0, max_attempts=4)
    async with (
        running_worker(skipping.client, settings),
        Receiver(scripted(Respond(429), Respond(500), Hang(5))) as rx,
    ):
        publisher = publisher.on(skipping.client, settings.task_queue)
        delivery_id, result = await deliver_through(
            skipping, publisher, rx, retry, timedelta(minutes=10)
        )
        attempts = await skipping.client.get_workflow_handle_for(
            WebhookDelivery.run, delivery_id
        ).query(WebhookDelivery.attempts)
    assert result.state is DeliveryState.DELIVERED
    assert [a.status_code for a in attempts] == [429, 500, None, 200]
    assert attempts[2].error_kind is ErrorKind.TIMEOUT
    floor = DEFAULT.throttled_min_seconds
    assert floor == 60
    waits = await timer_waits(skipping, delivery_id)
    assert len(waits) == 3
    assert floor - SLACK.total_seconds() <= waits[0] <= floor  # 429
    assert waits[1] <= 1  # a 500 keeps the schedule's wait
    assert floor - SLACK.total_seconds() <= waits[2] <= floor  # timeout


async def test_max_age_ends_the_delivery_before_an_attempt_that_would_start_too_late(
    skipping: WorkflowEnvironment, skipping_publisher: EndpointPublisher
) -> None:
    # Hourly attempts, at most 2.5 h old: attempts at 0, 1 h and 2 h; the next would be late.
    retry = RetrySchedule(
        schedule_seconds=[0, 3600], jitter=0, max_attempts=10, max_age_seconds=2.5 * 3600
    )
    async with Receiver(scripted(then=Respond(500))) as rx:
        delivery_id, result = await deliver_through(
            skipping, skipping_publisher, rx, retry, timedelta(hours=4)
        )
    assert result.state is DeliveryState.DEAD_LETTERED
    assert result.dead_letter_reason is DeadLetterReason.MAX_AGE
    assert result.attempts == 3
    assert len(rx.requests) == 3
    assert await timer_waits(skipping, delivery_id) == [3600, 3600]
