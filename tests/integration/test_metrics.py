"""Prometheus metrics through Temporal's runtime: the product's counters are exported."""

from __future__ import annotations

from temporalio.client import Client

from tests.integration.scrape import metered, scrape_until, value
from webhooks.config import Settings
from webhooks.core.models import DeliveryResult, DeliveryState, RetrySchedule
from webhooks.dev.receiver import Receiver, Respond
from webhooks.publisher import WebhookPublisher
from worker import running_worker


async def test_dead_letter_counter_is_exported(client: Client, settings: Settings) -> None:
    metered_client, metered_settings = await metered(client, settings)
    async with (
        running_worker(metered_client, metered_settings),
        Receiver(lambda _: Respond(500)) as rx,
    ):
        publisher = WebhookPublisher(metered_client, task_queue=metered_settings.task_queue)
        delivery_id = await publisher.publish(
            endpoint_id="ep_metrics",
            url=rx.url,
            event_type="test.metrics",
            data={},
            retry=RetrySchedule(schedule_seconds=[0], jitter=0),
        )
        handle = metered_client.get_workflow_handle(delivery_id, result_type=DeliveryResult)
        assert (await handle.result()).state is DeliveryState.DEAD_LETTERED
        samples = await scrape_until(
            metered_settings,
            lambda s: value(s, "webhooks_dead_letters_opened", reason="exhausted") >= 1,
        )
    assert value(samples, "webhooks_dead_letters_opened", reason="exhausted") == 1
