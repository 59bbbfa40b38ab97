from __future__ import annotations

from temporalio.client import Client

from webhooks.client import WebhookPublisher
from webhooks.models import DeliveryResult, RetrySchedule
from webhooks.receiver import Drop, Hang, Receiver, Respond, scripted


async def test_flaky(client: Client, worker: None, publisher: WebhookPublisher) -> None:
    async with Receiver(scripted(Respond(500), Hang(5), Drop(), Respond(503))) as rx:
        delivery_id = await publisher.publish(
            endpoint_id="ep_1",
            url=rx.url + "/hook",
            event_type="stream.settled",
            data={"amount": "1.00"},
            event_id="evt_smoke",
            retry=RetrySchedule(
                schedule_seconds=[0, 0.1, 0.1, 0.1, 0.1], jitter=0, throttled_min_seconds=0
            ),
        )
        result = await client.get_workflow_handle(delivery_id, result_type=DeliveryResult).result()
        print(result)
        print([(r.headers["webhook-id"], r.headers["webhook-timestamp"]) for r in rx.requests])
        assert result.state == "delivered"
