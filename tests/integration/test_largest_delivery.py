"""The largest delivery the bounds permit stays inside Temporal's limits: a maximal body,
the longest schedule with the shortest waits, maximal response excerpts, and two
redeliveries carrying earlier attempts. Measured on the histories of the time-skipping
test server: the dev server fires a 0.1 s timer after about a second, which made this
one test 200 s of waiting; the events and payloads are the same on both."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import pytest
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from tests.conftest import EndpointPublisher
from tests.integration import eventually, unique
from webhooks.config import Settings
from webhooks.core.models import (
    MAX_BODY_BYTES,
    DeadLetterState,
    DeliveryResult,
    DeliveryState,
    RedeliverRequest,
    RetrySchedule,
)
from webhooks.core.policy import (
    MAX_ATTEMPTS,
    MAX_CARRIED_ATTEMPTS,
    MAX_EXCERPT_BYTES,
    MIN_RETRY_WAIT_SECONDS,
)
from webhooks.dev.receiver import Receiver, Respond, scripted
from webhooks.registry.service import EndpointRegistry
from worker import running_worker
from workflows.dead_letter import DeadLetter
from workflows.delivery import WebhookDelivery

HISTORY_WARNING_EVENTS = 10_240
HISTORY_WARNING_BYTES = 10 * 1024 * 1024
PAYLOAD_LIMIT_BYTES = 2 * 1024 * 1024
LONGEST = RetrySchedule(
    schedule_seconds=[0] + [MIN_RETRY_WAIT_SECONDS] * (MAX_ATTEMPTS - 1),
    jitter=0,
    throttled_min_seconds=0,
)
RUN_BOUND_SECONDS = 400.0
"""One run of 100 attempts of a 256 KiB body on a loaded machine."""


async def history(handle: WorkflowHandle[Any, Any]) -> list[HistoryEvent]:
    return [e async for e in handle.fetch_history_events()]


def largest_event(events: list[HistoryEvent]) -> int:
    """Bytes of the largest event: its payloads are what Temporal's 2 MB limit is about."""
    return max(e.ByteSize() for e in events)


@pytest.mark.timeout(900)
async def test_the_largest_permitted_delivery_stays_within_temporals_limits(
    skipping: WorkflowEnvironment,
    settings: Settings,
    registry: EndpointRegistry,
    publisher: EndpointPublisher,
) -> None:
    client = skipping.client
    publisher = publisher.on(client, settings.task_queue)
    # Every response is a 500 with a 64 KiB body of quotes (the most JSON escaping), read
    # as far as a worker may be configured to.
    settings = settings.model_copy(update={"response_excerpt_bytes": MAX_EXCERPT_BYTES})
    failing = Respond(500, body=b'"' * 65536)
    async with running_worker(client, settings), Receiver(scripted(then=failing)) as rx:
        endpoint = await publisher.endpoint(unique("ep_big"), rx.url + "/hook")
        # Quotes are escaped in the body and again in the payload: the largest encoding.
        quotes = '"' * ((MAX_BODY_BYTES - 200) // 2)
        delivery_id = await publisher.publisher.publish(
            endpoint_id=endpoint,
            event_type="t.largest",
            data={"s": quotes},
            event_id=unique("evt"),
            retry=LONGEST,
        )
        # The first run's id, not None: the test server ends a long poll for the close event
        # with an empty page, and the SDK retries that only for a handle with a run id
        # ("No completion event found" on CI otherwise).
        run_id = (await client.get_workflow_handle(delivery_id).describe()).run_id
        measured: list[tuple[int, int, int, int, int]] = []
        print("\nlargest permitted delivery, per run: history events and bytes, largest event")
        # Two runs of the longest schedule (the dead letter of the second holds the most:
        # 100 attempts and the 50 carried), then a one-attempt redelivery that carries the
        # newest 50 and counts the other 150.
        for generation, attempts in enumerate((MAX_ATTEMPTS, MAX_ATTEMPTS, 1)):
            run = client.get_workflow_handle_for(WebhookDelivery.run, delivery_id, run_id=run_id)
            result: DeliveryResult = await asyncio.wait_for(run.result(), RUN_BOUND_SECONDS)
            assert result.state is DeliveryState.DEAD_LETTERED
            assert result.attempts == attempts
            assert result.dead_letter_id is not None
            dead_letter = client.get_workflow_handle_for(DeadLetter.run, result.dead_letter_id)
            view = await dead_letter.query(DeadLetter.entry)
            carried = min(generation, 1) * MAX_CARRIED_ATTEMPTS
            assert len(view.entry.attempts) == attempts + carried
            assert all(
                len((a.response_excerpt or "").encode()) <= MAX_EXCERPT_BYTES
                for a in view.entry.attempts
            )
            run_events = await history(run)
            letter_events = await history(dead_letter)
            figures = (
                len(run_events),
                sum(e.ByteSize() for e in run_events),
                largest_event(run_events),
                len(letter_events),
                largest_event(letter_events),
            )
            measured.append(figures)
            print(
                f"  generation {generation}: run {figures[0]} events, {figures[1]} B, largest "
                f"{figures[2]} B; dead letter {figures[3]} events, largest {figures[4]} B"
            )
            if generation == 2:
                earlier = view.entry.request
                break
            retry = None if generation == 0 else RetrySchedule(schedule_seconds=[0], jitter=0)
            await dead_letter.signal(
                DeadLetter.redeliver, RedeliverRequest(requested_by="t", retry=retry)
            )
            closed = await eventually(
                functools.partial(dead_letter.query, DeadLetter.entry),
                lambda v: v.state is DeadLetterState.REDELIVERED,
            )
            run_id = closed.redelivery_run_id
        body_bytes = len(rx.requests[0].body)

    assert body_bytes > MAX_BODY_BYTES - 300
    assert len(rx.requests) == 2 * MAX_ATTEMPTS + 1
    assert earlier.generation == 2
    assert earlier.earlier_attempts is not None
    assert earlier.earlier_attempts.count == 2 * MAX_ATTEMPTS - MAX_CARRIED_ATTEMPTS
    for events, total, biggest, letter, letter_biggest in measured:
        assert events < HISTORY_WARNING_EVENTS
        assert total < HISTORY_WARNING_BYTES
        assert letter < HISTORY_WARNING_EVENTS
        assert biggest < PAYLOAD_LIMIT_BYTES
        assert letter_biggest < PAYLOAD_LIMIT_BYTES
