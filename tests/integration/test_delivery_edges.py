"""The delivery's edges: what publishing again says, conflicting republishes, inputs the
worker cannot use, schema skew, and redelivery with a new schedule."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from tests.conftest import EndpointPublisher
from tests.integration import BOUND_SECONDS, Cli, eventually, fast, unique
from webhooks.config import Settings
from webhooks.core.ids import dead_letter_id, delivery_id
from webhooks.core.models import (
    DeadLetterReason,
    DeadLetterState,
    DeadLetterView,
    DeliveryOptions,
    DeliveryResult,
    DeliveryState,
    RedeliverRequest,
    RetrySchedule,
)
from webhooks.core.names import DELIVERY_WORKFLOW
from webhooks.dev.receiver import Receiver, Respond, scripted
from webhooks.ops.dead_letters import act_on
from webhooks.ops.errors import ConflictError
from webhooks.publisher import ExistingState, PublishConflictError, PublishOutcome
from webhooks.registry.service import EndpointRegistry
from workflows.dead_letter import DeadLetter
from workflows.delivery import WebhookDelivery
from workflows.inputs import INVALID_INPUT_ERROR


@pytest.fixture
def cli(client: Client, settings: Settings, registry: EndpointRegistry) -> Cli:
    return Cli(client, settings)


async def result_of(client: Client, workflow_id: str) -> DeliveryResult:
    handle = client.get_workflow_handle_for(WebhookDelivery.run, workflow_id)
    return await asyncio.wait_for(handle.result(), BOUND_SECONDS)


async def dead_letter_view(client: Client, dead_letter: str) -> DeadLetterView:
    handle = client.get_workflow_handle_for(DeadLetter.run, dead_letter)
    return await handle.query(DeadLetter.entry)


async def test_publish_says_started_running_delivered_and_dead_lettered(
    client: Client, worker: None, publisher: EndpointPublisher
) -> None:
    async with Receiver(scripted(Respond(500), then=Respond(200))) as rx:
        endpoint = await publisher.endpoint(unique("ep_say"), rx.url + "/hook")
        api = publisher.publisher
        event: dict[str, Any] = {"endpoint_id": endpoint, "event_type": "t.say", "data": {"n": 1}}
        event_id = unique("evt")
        slow = fast(0, 3600)  # the 500 parks it for an hour: running
        first = await api.publish_detailed(**event, event_id=event_id, retry=slow)
        assert (first.outcome, first.state, first.created) == (PublishOutcome.STARTED, None, True)
        await eventually(lambda: asyncio.sleep(0, rx.requests), lambda r: len(r) == 1)
        again = await api.publish_detailed(**event, event_id=event_id, retry=slow)
        assert (again.outcome, again.state) == (
            PublishOutcome.ALREADY_EXISTS,
            ExistingState.RUNNING,
        )
        assert again.model_dump(mode="json") == {
            "delivery_id": first.delivery_id,
            "endpoint_id": endpoint,
            "outcome": "already_exists",
            "state": "running",
            "created": False,
        }
        await client.get_workflow_handle(first.delivery_id).signal("retry_now")
        assert (await result_of(client, first.delivery_id)).state is DeliveryState.DELIVERED
        delivered = await api.publish_detailed(**event, event_id=event_id)
        assert delivered.state is ExistingState.DELIVERED

    async with Receiver(scripted(then=Respond(410))) as gone:
        endpoint = await publisher.endpoint(unique("ep_gone"), gone.url + "/hook")
        event_id = unique("evt")
        one: dict[str, Any] = {
            "endpoint_id": endpoint,
            "event_type": "t.say",
            "data": {},
            "event_id": event_id,
        }
        started = await publisher.publisher.publish_detailed(**one)
        assert (await result_of(client, started.delivery_id)).state is DeliveryState.DEAD_LETTERED
        parked = await publisher.publisher.publish_detailed(**one)
        assert parked.state is ExistingState.DEAD_LETTERED
        assert len(gone.requests) == 1


async def test_republish_after_a_terminated_delivery_starts_a_new_one(
    client: Client, worker: None, publisher: EndpointPublisher
) -> None:
    async with Receiver(scripted(Respond(500), then=Respond(200))) as rx:
        endpoint = await publisher.endpoint(unique("ep_term"), rx.url + "/hook")
        event: dict[str, Any] = {
            "endpoint_id": endpoint,
            "event_type": "t.term",
            "data": {"n": 1},
            "event_id": unique("evt"),
        }
        first = await publisher.publisher.publish_detailed(**event, retry=fast(0, 3600))
        await eventually(lambda: asyncio.sleep(0, rx.requests), lambda r: len(r) == 1)
        handle = client.get_workflow_handle(first.delivery_id)
        await handle.terminate("an operator stopped it")
        again = await publisher.publisher.publish_detailed(**event)
        assert again.outcome is PublishOutcome.STARTED
        assert (await result_of(client, again.delivery_id)).state is DeliveryState.DELIVERED
        assert len(rx.requests) == 2
        assert {r.headers["webhook-id"] for r in rx.requests} == {first.delivery_id}


async def test_republishing_other_content_under_an_event_id_is_refused(
    client: Client, worker: None, publisher: EndpointPublisher, cli: Cli
) -> None:
    async with Receiver() as rx:
        endpoint = await publisher.endpoint(unique("ep_conflict"), rx.url + "/hook")
        event_id = unique("evt")
        event: dict[str, Any] = {
            "endpoint_id": endpoint,
            "event_type": "t.conflict",
            "event_id": event_id,
        }
        first = await publisher.publisher.publish_detailed(**event, data={"amount": "1.00"})
        # A retry of the same call (a fresh timestamp) is the same event, not a conflict.
        same = await publisher.publisher.publish_detailed(**event, data={"amount": "1.00"})
        assert same.outcome is PublishOutcome.ALREADY_EXISTS
        with pytest.raises(PublishConflictError, match="different content") as refused:
            await publisher.publisher.publish(**event, data={"amount": "2.00"})
        assert refused.value.delivery_ids == [first.delivery_id]
        through_cli = await cli(
            "publish", "--endpoint-id", endpoint, "--event-type", "t.conflict",
            "--event-id", event_id, "--data", '{"amount": "3.00"}',
        )  # fmt: skip
        assert through_cli.exit_code == 2, through_cli.output
        assert "different content" in through_cli.stderr
        await result_of(client, first.delivery_id)
        await asyncio.sleep(0.5)  # anything wrongly started would have been sent by now
        assert [json.loads(r.body)["data"] for r in rx.requests] == [{"amount": "1.00"}]


async def test_the_cli_reports_the_outcome_as_json(
    client: Client, worker: None, publisher: EndpointPublisher, cli: Cli
) -> None:
    async with Receiver() as rx:
        endpoint = await publisher.endpoint(unique("ep_cli"), rx.url + "/hook")
        args = ("publish", "--endpoint-id", endpoint, "--event-type", "t.cli", "--data", "{}")
        event_id = unique("evt")
        first = await cli.json(*args, "--event-id", event_id)
        assert (first["outcome"], first["state"], first["created"]) == ("started", None, True)
        await result_of(client, first["delivery_id"])
        again = await cli(*args, "--event-id", event_id)
        assert again.exit_code == 0
        assert again.stdout.split() == [first["delivery_id"]]
        assert "already published, delivered" in again.stderr
        beyond = await cli(*args, "--schedule", "0,0,0")
        assert beyond.exit_code == 2
        assert "waits less than 0.1 s between attempts" in beyond.stderr


async def start_raw(client: Client, settings: Settings, workflow_id: str, raw: Any) -> None:
    """Start a delivery as a non-Python publisher would: a JSON input, by workflow name."""
    await client.start_workflow(
        DELIVERY_WORKFLOW, raw, id=workflow_id, task_queue=settings.task_queue
    )


def wire_input(endpoint: str, event_id: str, **changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "delivery_id": delivery_id(endpoint, event_id),
        "endpoint_id": endpoint,
        "event_id": event_id,
        "event_type": "t.wire",
        "body": json.dumps({"id": event_id, "type": "t.wire", "data": {}}),
        "published_at": "2026-12-01T12:00:00Z",
        "options": {"retry": {"schedule_seconds": [0], "jitter": 0}},
    }
    raw.update(changes)
    return raw


async def test_an_input_with_unknown_fields_is_delivered(
    client: Client, settings: Settings, worker: None, publisher: EndpointPublisher
) -> None:
    async with Receiver() as rx:
        endpoint = await publisher.endpoint(unique("ep_newer"), rx.url + "/hook")
        event_id = unique("evt")
        raw = wire_input(endpoint, event_id, priority="high")  # from a newer publisher
        raw["options"]["retry"]["jitter_mode"] = "full"
        raw["options"]["fan_in"] = True
        await start_raw(client, settings, raw["delivery_id"], raw)
        assert (await result_of(client, raw["delivery_id"])).state is DeliveryState.DELIVERED
        assert [r.body.decode() for r in rx.requests] == [raw["body"]]


@pytest.mark.parametrize(
    ("case", "raw", "says"),
    [
        ("malformed", {"delivery_id": "has spaces", "url": "ftp://x"}, "not a delivery request"),
        ("not-json-object", [1, 2, 3], "not a delivery request"),
        ("no-input", None, "started without an input"),
        ("wrong-id", None, "is not derived from endpoint_id and event_id"),
        ("beyond-bounds", None, "schedule_seconds has 101 entries; at most 100"),
    ],
)
async def test_an_input_the_worker_cannot_use_is_dead_lettered_as_invalid_input(
    client: Client,
    settings: Settings,
    worker: None,
    publisher: EndpointPublisher,
    case: str,
    raw: Any,
    says: str,
) -> None:
    async with Receiver() as rx:
        endpoint = await publisher.endpoint(unique("ep_bad"), rx.url + "/hook")
        event_id = unique("evt")
        workflow_id = delivery_id(endpoint, event_id)
        if case == "wrong-id":
            # Derived another way: it would collide across endpoints, so it never runs.
            workflow_id = f"msg_{event_id}"
            raw = wire_input(endpoint, event_id, delivery_id=workflow_id)
        elif case == "beyond-bounds":
            raw = wire_input(endpoint, event_id)
            raw["options"]["retry"]["schedule_seconds"] = [0] + [1] * 100
        if case == "no-input":  # `temporal workflow start` without `--input`
            await client.start_workflow(
                DELIVERY_WORKFLOW, id=workflow_id, task_queue=settings.task_queue
            )
        else:
            await start_raw(client, settings, workflow_id, raw)
        handle = client.get_workflow_handle_for(WebhookDelivery.run, workflow_id)
        # The run fails once its input is parked, so a corrected publish may reuse the id.
        with pytest.raises(WorkflowFailureError) as failed:
            await asyncio.wait_for(handle.result(), BOUND_SECONDS)
        cause = failed.value.cause
        assert isinstance(cause, ApplicationError)
        assert (cause.type, cause.non_retryable) == (INVALID_INPUT_ERROR, True)
        letter = dead_letter_id(workflow_id, 0)
        assert letter in str(cause)
        status = await handle.query(WebhookDelivery.status)
        assert (status.state, status.attempts) == (DeliveryState.DEAD_LETTERED, 0)
        assert status.dead_letter_reason is DeadLetterReason.INVALID_INPUT
        view = await dead_letter_view(client, letter)
        assert view.entry.reason is DeadLetterReason.INVALID_INPUT
        assert says in (view.entry.detail or "")
        if case in ("malformed", "not-json-object"):
            assert view.entry.raw_input is not None
            assert json.loads(view.entry.raw_input) == raw
            with pytest.raises(ConflictError, match="not a delivery"):
                await act_on(client, letter, RedeliverRequest())
        elif case == "no-input":
            assert view.entry.raw_input == ""
            assert view.entry.request.endpoint_id == "unknown"
        else:
            assert view.entry.request.endpoint_id == endpoint
        assert rx.requests == []  # nothing was sent
        if case != "wrong-id":  # the corrected event, published again, is delivered
            again = await publisher.publisher.publish_detailed(
                endpoint_id=endpoint, event_type="t.wire", data={}, event_id=event_id
            )
            assert (again.delivery_id, again.outcome) == (workflow_id, PublishOutcome.STARTED)
            assert (await result_of(client, workflow_id)).state is DeliveryState.DELIVERED
            assert len(rx.requests) == 1


async def test_a_redelivery_with_a_new_schedule_keeps_the_other_options(
    client: Client, worker: None, publisher: EndpointPublisher
) -> None:
    async with Receiver(scripted(Respond(500), then=Respond(200))) as rx:
        endpoint = await publisher.endpoint(unique("ep_keep"), rx.url + "/hook")
        request = await publisher.request(
            endpoint_id=endpoint, url=rx.url + "/hook", event_type="t.keep", data={}
        )
        options = DeliveryOptions(
            retry=fast(0), dead_letter_on_4xx=True, dead_letter_retention_seconds=7200
        )
        request = request.model_copy(update={"options": options})
        await publisher.start(request)
        first = await result_of(client, request.delivery_id)
        assert first.dead_letter_id == dead_letter_id(request.delivery_id, 0)
        new_schedule = RetrySchedule(schedule_seconds=[0, 0.2], jitter=0)
        with pytest.raises(ValueError, match=r"waits less than 0\.1 s"):
            await act_on(client, first.dead_letter_id, RedeliverRequest(retry=fast(0, 0.01)))
        await act_on(client, first.dead_letter_id, RedeliverRequest(retry=new_schedule))

        view = await eventually(
            lambda: dead_letter_view(client, first.dead_letter_id or ""),
            lambda v: v.state is DeadLetterState.REDELIVERED,
        )
        assert view.redelivery_run_id is not None
        second = client.get_workflow_handle_for(
            WebhookDelivery.run, request.delivery_id, run_id=view.redelivery_run_id
        )
        assert (await second.result()).state is DeliveryState.DELIVERED
        history = await second.fetch_history()
        started = history.events[0].workflow_execution_started_event_attributes
        redelivered = json.loads(started.input.payloads[0].data)
        assert redelivered["options"] == {
            **options.model_dump(mode="json"),
            "retry": new_schedule.model_dump(mode="json"),
        }
        assert redelivered["generation"] == 1
        assert len(redelivered["prior_attempts"]) == 1
        assert len(rx.requests) == 2
