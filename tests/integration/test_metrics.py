"""Prometheus metrics through Temporal's runtime: the product's counters are exported."""

from __future__ import annotations

import asyncio
import socket

import httpx
from temporalio.client import Client

from tests.conftest import EndpointPublisher
from webhooks.config import Settings
from webhooks.core.models import DeliveryResult, DeliveryState, RetrySchedule
from webhooks.dev.receiver import Receiver, Respond
from webhooks.publisher import connect
from worker import running_worker


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_dead_letter_counter_is_exported(
    client: Client, settings: Settings, publisher: EndpointPublisher
) -> None:
    address = f"127.0.0.1:{free_port()}"
    target = client.service_client.config.target_host
    metered = settings.model_copy(
        update={"temporal_address": target, "metrics_bind_address": address}
    )
    metered_client = await connect(metered)
    async with running_worker(metered_client, metered), Receiver(lambda _: Respond(500)) as rx:
        publisher = publisher.on(metered_client, metered.task_queue)
        delivery_id = await publisher.publish(
            endpoint_id="ep_metrics",
            url=rx.url,
            event_type="test.metrics",
            data={},
            retry=RetrySchedule(schedule_seconds=[0], jitter=0),
        )
        handle = metered_client.get_workflow_handle(delivery_id, result_type=DeliveryResult)
        assert (await handle.result()).state is DeliveryState.DEAD_LETTERED
        text = ""
        async with httpx.AsyncClient() as http:
            for _ in range(50):
                text = (await http.get(f"http://{address}/metrics")).text
                if "webhooks_dead_letters_opened" in text:
                    break
                await asyncio.sleep(0.2)
    line = next(x for x in text.splitlines() if x.startswith("webhooks_dead_letters_opened"))
    assert 'reason="exhausted"' in line
    assert float(line.rsplit(" ", 1)[1]) >= 1
