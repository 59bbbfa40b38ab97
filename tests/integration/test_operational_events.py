"""Operational events against a real dev server and registry: an auto-disabled endpoint and
each dead letter reach StreamPay's operations endpoint exactly once, signed like any webhook
(checked with the `standardwebhooks` package); events about an operations endpoint itself
are never sent; a dead letter about to expire warns once."""

from __future__ import annotations

import asyncio
import base64
from functools import partial
from typing import Any

from pydantic import SecretStr
from temporalio.client import Client, WorkflowExecutionStatus

from tests.conftest import ACCOUNT, EndpointPublisher
from tests.integration import BOUND_SECONDS, eventually, fast, listed, unique, verify
from webhooks.config import Settings
from webhooks.core.events import validate_event_data
from webhooks.core.models import DeadLetterState, DeadLetterView, DeliveryResult, DeliveryState
from webhooks.core.operational import (
    DEAD_LETTER_EXPIRING,
    DELIVERY_DEAD_LETTERED,
    ENDPOINT_DISABLED,
    TYPES,
)
from webhooks.dev.receiver import ReceivedRequest, Receiver, Respond
from webhooks.registry.models import NewEndpoint
from webhooks.registry.service import EndpointRegistry
from worker import running_worker

OPS_ACCOUNT = "acct_streampay_ops"
OPS_SECRET = "whsec_" + base64.b64encode(b"streampay-operations-secret-0123").decode()
ACTIVITY = "publish_operational_event"


async def operations_endpoint(registry: EndpointRegistry, url: str) -> str:
    """One of StreamPay's own endpoints, subscribed to every operational event."""
    endpoint_id = unique("ep_ops")
    new = NewEndpoint(id=endpoint_id, account_id=OPS_ACCOUNT, url=url, event_types=list(TYPES))
    await registry.create(new, secret=SecretStr(OPS_SECRET))
    return endpoint_id


def events(requests: list[ReceivedRequest]) -> list[dict[str, Any]]:
    """Each request's payload, after checking its signature as StreamPay's receiver would."""
    payloads = []
    for request in requests:
        payload = verify(request, OPS_SECRET)
        assert isinstance(payload, dict)
        validate_event_data(payload["type"], payload["data"])  # the documented schema
        payloads.append(payload)
    return payloads


async def arrived(receiver: Receiver) -> int:
    return len(receiver.requests)


async def emitted(client: Client, workflow_id: str) -> bool:
    """Whether every operational-event activity the workflow scheduled has completed."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    scheduled = {
        e.event_id
        for e in history.events
        if e.activity_task_scheduled_event_attributes.activity_type.name == ACTIVITY
    }
    completed = {
        e.activity_task_completed_event_attributes.scheduled_event_id
        for e in history.events
        if e.HasField("activity_task_completed_event_attributes")
    }
    return bool(scheduled) and scheduled <= completed


async def test_auto_disable_and_dead_letters_each_send_one_signed_event(
    client: Client, settings: Settings, registry: EndpointRegistry, publisher: EndpointPublisher
) -> None:
    settings = settings.model_copy(
        update={"operations_account_id": OPS_ACCOUNT, "circuit_enabled": True}
    )
    async with (
        Receiver() as ops_rx,
        Receiver(lambda _: Respond(410)) as ops_gone_rx,
        Receiver(lambda _: Respond(410)) as gone_rx,
        Receiver(lambda _: Respond(500)) as down_rx,
        running_worker(client, settings),
    ):
        ops = await operations_endpoint(registry, ops_rx.url)
        # An operations endpoint that is gone too: its own dead letters and its own
        # disabling are never reported (to it or to the other one).
        ops_gone = await operations_endpoint(registry, ops_gone_rx.url)
        gone, down = unique("ep_gone"), unique("ep_down")
        event: dict[str, Any] = {"event_type": "test.ops", "data": {"n": 1}}
        gone_delivery = await publisher.publish(
            endpoint_id=gone, url=gone_rx.url, retry=fast(0), **event
        )
        down_delivery = await publisher.publish(
            endpoint_id=down, url=down_rx.url, retry=fast(0, 0.1), **event
        )
        for delivery in (gone_delivery, down_delivery):
            handle = client.get_workflow_handle(delivery, result_type=DeliveryResult)
            result = await asyncio.wait_for(handle.result(), BOUND_SECONDS)
            assert result.state is DeliveryState.DEAD_LETTERED

        await eventually(partial(arrived, ops_rx), lambda n: n >= 3, within=2 * BOUND_SECONDS)
        # Everything the gone operations endpoint set off has been through the activity:
        # its circuit's `endpoint.disabled` and every dead letter of its deliveries.
        await eventually(partial(emitted, client, f"circuit-{ops_gone}"), bool)
        own = await listed(
            client, f"WorkflowType = 'DeadLetter' AND WebhookEndpointId = '{ops_gone}'"
        )
        for dead_letter in own:
            await eventually(partial(emitted, client, dead_letter.id), bool)
        await asyncio.sleep(2)  # a delivery it had started would be there by now
        deliveries = [
            wf
            async for wf in client.list_workflows(
                f"WorkflowType = 'WebhookDelivery' AND WebhookEndpointId = '{ops}'"
            )
        ]

    received = events(ops_rx.requests)
    assert sorted((e["type"], e["data"]["endpoint_id"]) for e in received) == sorted(
        [
            (ENDPOINT_DISABLED, gone),
            (DELIVERY_DEAD_LETTERED, gone),
            (DELIVERY_DEAD_LETTERED, down),
        ]
    )
    assert len(deliveries) == 3
    assert len({r.headers["webhook-id"] for r in ops_rx.requests}) == 3
    assert all(e["data"]["account_id"] == ACCOUNT for e in received)  # the customer's
    disabled = next(e["data"] for e in received if e["type"] == ENDPOINT_DISABLED)
    assert disabled["automatic"] is True
    assert "410" in disabled["reason"]
    lettered = {e["data"]["delivery_id"]: e["data"] for e in received if "delivery_id" in e["data"]}
    assert lettered[gone_delivery]["reason"] == "gone"
    assert lettered[down_delivery]["reason"] == "exhausted"
    assert lettered[down_delivery]["attempts"] == 2
    # The gone operations endpoint got the same events (until disabled), none about itself.
    assert ops_gone_rx.requests
    assert {e["data"]["endpoint_id"] for e in events(ops_gone_rx.requests)} <= {gone, down}


async def test_a_dead_letter_about_to_expire_warns_once(
    client: Client, settings: Settings, registry: EndpointRegistry, publisher: EndpointPublisher
) -> None:
    settings = settings.model_copy(
        update={"operations_account_id": OPS_ACCOUNT, "dead_letter_expiry_warning_seconds": 7}
    )
    async with Receiver() as ops_rx, Receiver(lambda _: Respond(500)) as down_rx:
        await operations_endpoint(registry, ops_rx.url)
        request = await publisher.request(
            endpoint_id=unique("ep_down"),
            url=down_rx.url,
            event_type="test.ops",
            data={"n": 1},
            retry=fast(0),
        )
        # The warning is due 7 s after the dead letter opens: time enough for its first event.
        options = request.options.model_copy(update={"dead_letter_retention_seconds": 14})
        request = request.model_copy(update={"options": options})
        async with running_worker(client, settings):
            delivery = await publisher.start(request)
            [dead_letter] = await listed(
                client,
                f"WorkflowType = 'DeadLetter' AND WebhookEndpointId = '{request.endpoint_id}'",
            )
            handle = client.get_workflow_handle(dead_letter.id, result_type=DeadLetterView)
            view = await asyncio.wait_for(handle.result(), 2 * BOUND_SECONDS)
            await eventually(partial(arrived, ops_rx), lambda n: n >= 2, within=2 * BOUND_SECONDS)
            assert (await handle.describe()).status is WorkflowExecutionStatus.COMPLETED
            await asyncio.sleep(1)
    assert view.state is DeadLetterState.EXPIRED
    received = events(ops_rx.requests)
    assert [e["type"] for e in received] == [DELIVERY_DEAD_LETTERED, DEAD_LETTER_EXPIRING]
    assert {e["data"]["delivery_id"] for e in received} == {delivery}
    assert {e["data"]["dead_letter_id"] for e in received} == {dead_letter.id}
    warned = received[1]["data"]
    assert warned["expires_at"] == received[0]["data"]["expires_at"]
