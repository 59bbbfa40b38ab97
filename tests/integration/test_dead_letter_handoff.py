"""The handoff to the dead-letter queue never gets stuck, even when an earlier run's dead
letter still holds the id (a republish after the namespace retention forgot the delivery)."""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio.client import Client

from tests.conftest import EndpointPublisher
from webhooks.config import Settings
from webhooks.core.ids import dead_letter_id
from webhooks.core.models import (
    DeadLetterEntry,
    DeadLetterReason,
    DeadLetterView,
    DeliveryOptions,
    DeliveryResult,
    DeliveryState,
    RetrySchedule,
)
from webhooks.dev.receiver import Receiver, Respond


async def test_second_dead_letter_parks_beside_an_open_one(
    client: Client, settings: Settings, worker: None, publisher: EndpointPublisher
) -> None:
    async with Receiver(lambda _: Respond(500)) as rx:
        request = await publisher.request(
            endpoint_id="ep_handoff",
            url=rx.url,
            event_type="test.handoff",
            data={},
            event_id="evt_handoff",
            retry=RetrySchedule(schedule_seconds=[0], jitter=0),
        )
        occupied = dead_letter_id(request.delivery_id, 0)
        await client.start_workflow(
            "DeadLetter",
            DeadLetterEntry(
                dead_letter_id=occupied,
                request=request,
                attempts=[],
                reason=DeadLetterReason.EXHAUSTED,
                dead_lettered_at=datetime.now(UTC),
            ),
            id=occupied,
            task_queue=settings.task_queue,
        )
        await publisher.start(request)
        result = await client.get_workflow_handle(
            request.delivery_id, result_type=DeliveryResult
        ).result()
    assert result.state is DeliveryState.DEAD_LETTERED
    assert result.dead_letter_id is not None
    assert result.dead_letter_id.startswith(occupied + "-")
    view = await client.get_workflow_handle(result.dead_letter_id).query(
        "entry", result_type=DeadLetterView
    )
    assert view.entry.reason is DeadLetterReason.EXHAUSTED
    assert view.entry.retention_seconds == DeliveryOptions().dead_letter_retention_seconds
    assert len(view.entry.attempts) == 1
