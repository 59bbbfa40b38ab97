"""End-to-end delivery against the real dev server and a real HTTP receiver."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from itertools import pairwise

import pytest
from sqlalchemy import update
from temporalio.client import Client, WorkflowExecutionStatus

from tests.conftest import OLD_SECRET, SECRET, EndpointPublisher
from tests.integration import (
    BOUND_SECONDS,
    fast,
    listed,
    settled,
    unique,
    verify,
    wait_for_state,
)
from webhooks.config import Settings
from webhooks.core import search_attributes as sa
from webhooks.core.ids import dead_letter_id
from webhooks.core.models import (
    DeadLetterReason,
    DeadLetterState,
    DeliveryState,
    ErrorKind,
    Outcome,
    RetrySchedule,
)
from webhooks.dev.receiver import Behavior, Drop, Hang, Receiver, Respond, scripted
from webhooks.publisher import PublishConflictError
from webhooks.registry.schema import endpoints
from worker import running_worker
from workflows.dead_letter import DeadLetter
from workflows.delivery import WebhookDelivery


async def test_flaky_receiver_gets_one_delivery_signed_afresh_on_every_attempt(
    client: Client, worker: None, publisher: EndpointPublisher
) -> None:
    endpoint = unique("ep_flaky")
    # N = 4 failures of every transport kind, then 200. Hang outlasts the 2 s test timeout.
    script = scripted(Respond(500), Hang(3), Drop(), Respond(503))
    async with Receiver(script) as rx:
        delivery_id = await publisher.publish(
            endpoint_id=endpoint,
            url=rx.url + "/hook",
            event_type="stream.settled",
            data=settled("1.00"),
            event_id=unique("evt"),
            # Waits >= 1.1 s keep the unix-second timestamps distinct; the hang itself
            # takes 2 s, so the attempt after it needs only the shortest wait allowed.
            retry=fast(0, 1.1, 0.1, 1.1, 1.1),
        )
        handle = client.get_workflow_handle_for(WebhookDelivery.run, delivery_id)
        result = await asyncio.wait_for(handle.result(), BOUND_SECONDS)

    assert result.state is DeliveryState.DELIVERED
    assert result.attempts == 5
    assert result.last_status_code == 200

    # What the customer saw: one delivery id, the same bytes, a fresh valid signature each time.
    requests = rx.requests
    assert len(requests) == 5
    assert {r.headers["webhook-id"] for r in requests} == {delivery_id}
    assert len({r.body for r in requests}) == 1
    assert len({r.headers["webhook-timestamp"] for r in requests}) == 5
    assert len({r.headers["webhook-signature"] for r in requests}) == 5
    for request in requests:
        assert request.method == "POST"
        assert request.path == "/hook"
        assert request.headers["content-type"] == "application/json"
        assert request.headers["user-agent"].startswith("StreamPay-Webhooks/")
        payload = verify(request, SECRET)
        assert payload == json.loads(requests[0].body)
    event = json.loads(requests[0].body)
    assert event["type"] == "stream.settled"
    assert event["data"]["amount"] == "1.00"

    # The attempt table.
    attempts = await handle.query(WebhookDelivery.attempts)
    assert [a.number for a in attempts] == [1, 2, 3, 4, 5]
    assert [a.outcome for a in attempts] == [Outcome.RETRYABLE] * 4 + [Outcome.DELIVERED]
    assert [a.status_code for a in attempts] == [500, None, None, 503, 200]
    assert [a.error_kind for a in attempts] == [
        ErrorKind.HTTP_STATUS,
        ErrorKind.TIMEOUT,
        ErrorKind.PROTOCOL,
        ErrorKind.HTTP_STATUS,
        None,
    ]
    assert attempts[-1].next_attempt_at is None
    for earlier, later in pairwise(attempts):
        # Each retry was planned, and did not start before it was due.
        assert earlier.next_attempt_at is not None
        assert earlier.next_attempt_at <= later.started_at
    assert all(a.generation == 0 for a in attempts)

    status = await handle.query(WebhookDelivery.status)
    assert status.delivery_id == delivery_id
    assert status.endpoint_id == endpoint
    assert status.event_type == "stream.settled"
    assert status.state is DeliveryState.DELIVERED
    assert status.attempts == 5
    assert status.last_status_code == 200
    assert status.next_attempt_at is None
    assert status.dead_letter_reason is None

    attrs = (await handle.describe()).typed_search_attributes
    assert attrs.get(sa.ENDPOINT_ID) == endpoint
    assert attrs.get(sa.EVENT_TYPE) == "stream.settled"
    assert attrs.get(sa.STATUS) == "delivered"
    assert attrs.get(sa.ATTEMPTS) == 5
    assert attrs.get(sa.LAST_STATUS_CODE) == 200
    assert attrs.get(sa.NEXT_ATTEMPT_AT) is None
    found = await listed(
        client,
        f"WorkflowType='WebhookDelivery' AND WebhookEndpointId='{endpoint}' "
        "AND WebhookStatus='delivered'",
    )
    assert [wf.id for wf in found] == [delivery_id]


async def test_rotating_secret_signs_with_every_active_key(
    client: Client, worker: None, publisher: EndpointPublisher
) -> None:
    async with Receiver() as rx:
        delivery_id = await publisher.publish(
            endpoint_id=unique("ep_rotate"),
            url=rx.url,
            event_type="stream.settled",
            data=settled(),
            secrets=(SECRET, OLD_SECRET),  # a rotation under way: both sign
        )
        await asyncio.wait_for(client.get_workflow_handle(delivery_id).result(), BOUND_SECONDS)
    [request] = rx.requests
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    # A customer holding either the new or the old secret accepts it during rotation.
    verify(request, SECRET)
    verify(request, OLD_SECRET)


async def test_always_failing_receiver_ends_in_a_dead_letter(
    client: Client, worker: None, publisher: EndpointPublisher
) -> None:
    endpoint = unique("ep_dead")
    async with Receiver(scripted(then=Respond(500, b"upstream down"))) as rx:
        delivery_id = await publisher.publish(
            endpoint_id=endpoint,
            url=rx.url,
            event_type="stream.settled",
            data=settled("2.00"),
            retry=fast(0, 0.1, 0.1),
        )
        handle = client.get_workflow_handle_for(WebhookDelivery.run, delivery_id)
        result = await asyncio.wait_for(handle.result(), BOUND_SECONDS)

    assert result.state is DeliveryState.DEAD_LETTERED
    assert result.dead_letter_reason is DeadLetterReason.EXHAUSTED
    assert result.attempts == 3
    assert result.last_status_code == 500
    assert result.dead_letter_id == dead_letter_id(delivery_id, 0)
    assert len(rx.requests) == 3

    status = await handle.query(WebhookDelivery.status)
    assert status.state is DeliveryState.DEAD_LETTERED
    assert status.dead_letter_reason is DeadLetterReason.EXHAUSTED
    assert (await handle.describe()).typed_search_attributes.get(sa.STATUS) == "dead_lettered"

    # The child outlives its parent and holds everything an operator needs.
    child = client.get_workflow_handle_for(DeadLetter.run, result.dead_letter_id)
    assert (await child.describe()).status is WorkflowExecutionStatus.RUNNING
    view = await child.query(DeadLetter.entry)
    assert view.state is DeadLetterState.OPEN
    assert view.entry.dead_letter_id == result.dead_letter_id
    assert view.entry.reason is DeadLetterReason.EXHAUSTED
    assert view.entry.request.delivery_id == delivery_id
    assert view.entry.request.endpoint_id == endpoint
    assert view.entry.request.body.encode() == rx.requests[0].body
    assert [a.number for a in view.entry.attempts] == [1, 2, 3]
    assert [a.status_code for a in view.entry.attempts] == [500, 500, 500]
    assert view.entry.attempts[0].response_excerpt == "upstream down"
    assert view.entry.attempts == await handle.query(WebhookDelivery.attempts)

    found = await listed(
        client,
        f"WorkflowType='DeadLetter' AND WebhookStatus='dead_lettered' "
        f"AND WebhookEndpointId='{endpoint}'",
    )
    assert [wf.id for wf in found] == [result.dead_letter_id]


@pytest.mark.parametrize(
    ("script", "dead_letter_on_4xx", "state", "reason", "attempts"),
    [
        pytest.param([Respond(410)], False, "dead_lettered", "gone", 1, id="410-gone"),
        pytest.param([Respond(400)], True, "dead_lettered", "rejected", 1, id="400-rejected"),
        pytest.param([Respond(400)], False, "delivered", None, 2, id="400-retried-by-default"),
        pytest.param(
            [Respond(302, headers={"location": "/elsewhere"})],
            False,
            "delivered",
            None,
            2,
            id="302-retried-never-followed",
        ),
    ],
)
async def test_status_code_policy(
    client: Client,
    worker: None,
    publisher: EndpointPublisher,
    script: list[Behavior],
    dead_letter_on_4xx: bool,
    state: str,
    reason: str | None,
    attempts: int,
) -> None:
    async with Receiver(scripted(*script)) as rx:
        delivery_id = await publisher.publish(
            endpoint_id=unique("ep_policy"),
            url=rx.url + "/hook",
            event_type="stream.settled",
            data=settled(),
            retry=fast(0, 0.1, 0.1),
            dead_letter_on_4xx=dead_letter_on_4xx,
        )
        handle = client.get_workflow_handle_for(WebhookDelivery.run, delivery_id)
        result = await asyncio.wait_for(handle.result(), BOUND_SECONDS)

    assert result.state == state
    assert result.dead_letter_reason == reason
    assert result.attempts == attempts
    assert len(rx.requests) == attempts
    assert {r.path for r in rx.requests} == {"/hook"}
    if reason is not None:
        child = client.get_workflow_handle_for(DeadLetter.run, dead_letter_id(delivery_id, 0))
        assert (await child.query(DeadLetter.entry)).entry.reason == reason


async def test_retry_now_cuts_a_long_wait_short(
    client: Client, worker: None, publisher: EndpointPublisher
) -> None:
    endpoint = unique("ep_retry_now")
    async with Receiver(scripted(Respond(503))) as rx:
        delivery_id = await publisher.publish(
            endpoint_id=endpoint,
            url=rx.url,
            event_type="stream.settled",
            data=settled(),
            retry=fast(0, 3600),
        )
        handle = client.get_workflow_handle_for(WebhookDelivery.run, delivery_id)
        waiting = await wait_for_state(handle, DeliveryState.RETRYING)
        assert waiting.attempts == 1
        assert waiting.last_status_code == 503
        assert waiting.next_attempt_at is not None

        # Operators find it (and when it tries next) by endpoint and status.
        [found] = await listed(
            client,
            f"WorkflowType='WebhookDelivery' AND WebhookEndpointId='{endpoint}' "
            "AND WebhookStatus='retrying'",
        )
        assert found.id == delivery_id
        assert found.typed_search_attributes.get(sa.NEXT_ATTEMPT_AT) == waiting.next_attempt_at
        assert found.typed_search_attributes.get(sa.ATTEMPTS) == 1

        await handle.signal(WebhookDelivery.retry_now)
        result = await asyncio.wait_for(handle.result(), BOUND_SECONDS)

    assert result.state is DeliveryState.DELIVERED
    assert result.attempts == 2
    first, second = await handle.query(WebhookDelivery.attempts)
    assert first.next_attempt_at is not None
    assert first.next_attempt_at - first.started_at >= timedelta(minutes=59)
    # The second attempt ran long before the hour it was scheduled for.
    assert second.started_at < first.next_attempt_at - timedelta(minutes=55)
    assert len(rx.requests) == 2


async def test_republishing_is_idempotent(
    client: Client, worker: None, publisher: EndpointPublisher
) -> None:
    endpoint, other_endpoint, event_id = unique("ep_idem"), unique("ep_idem"), unique("evt")
    retry = fast(0, 3600)

    async def publish(endpoint_id: str, settlement_id: str, url: str) -> str:
        return await publisher.publish(
            endpoint_id=endpoint_id,
            url=url,
            event_type="stream.settled",
            data=settled(settlement_id=settlement_id),
            event_id=event_id,
            retry=retry,
        )

    async with Receiver(scripted(Respond(500))) as rx:
        delivery_id = await publish(endpoint, "first", rx.url)
        handle = client.get_workflow_handle_for(WebhookDelivery.run, delivery_id)
        await wait_for_state(handle, DeliveryState.RETRYING)
        run_id = (await handle.describe()).run_id

        # While it runs (waiting an hour to retry): same id, same run, no new request.
        assert await publish(endpoint, "first", rx.url) == delivery_id
        assert (await handle.describe()).run_id == run_id
        assert len(rx.requests) == 1
        # The same event id with other content is a conflict, not a silent no-op.
        with pytest.raises(PublishConflictError):
            await publish(endpoint, "second", rx.url)

        await handle.signal(WebhookDelivery.retry_now)
        result = await asyncio.wait_for(handle.result(), BOUND_SECONDS)
        assert result.state is DeliveryState.DELIVERED

        # After it completed: still the same id and the same single run.
        assert await publish(endpoint, "first", rx.url) == delivery_id
        description = await handle.describe()
        assert description.run_id == run_id
        assert description.status is WorkflowExecutionStatus.COMPLETED

        # The same event to another endpoint is another delivery.
        other_id = await publish(other_endpoint, "other", rx.url)
        assert other_id != delivery_id
        other_handle = client.get_workflow_handle_for(WebhookDelivery.run, other_id)
        other = await asyncio.wait_for(other_handle.result(), BOUND_SECONDS)
        assert other.state is DeliveryState.DELIVERED

    mine = [r for r in rx.requests if r.headers["webhook-id"] == delivery_id]
    assert len(mine) == 2  # the 500 and the 200: one delivery, retried once
    assert {json.loads(r.body)["data"]["settlement_id"] for r in mine} == {"first"}
    assert [r.headers["webhook-id"] for r in rx.requests[2:]] == [other_id]
    runs = await listed(client, f"WorkflowId='{delivery_id}'")
    assert [wf.run_id for wf in runs] == [run_id]


def test_default_schedule_is_the_standard_webhooks_one() -> None:
    """The time-skipping tests rely on this; spelled out here so a change is deliberate."""
    assert RetrySchedule().schedule_seconds == [
        0,
        5,
        300,
        1800,
        7200,
        18000,
        36000,
        50400,
        72000,
        86400,
    ]


async def test_an_activity_error_is_a_recorded_failed_attempt(
    client: Client, settings: Settings, worker: None, publisher: EndpointPublisher
) -> None:
    """The send activity raising (here: a registry row corrupted behind the service's back,
    so its settings no longer validate) is our fault, not the receiver's: a failed attempt in
    the table, then the loop goes on."""
    engine = publisher.registry.store.engine
    async with Receiver() as rx:
        endpoint_id = unique("ep_internal")
        request = await publisher.request(
            endpoint_id=endpoint_id,
            url=rx.url,
            event_type="stream.settled",
            data=settled(),
            retry=fast(0, 0.5),
        )
        async with engine.begin() as conn:
            await conn.execute(
                update(endpoints)
                .where(endpoints.c.id == endpoint_id)
                .values(settings={"timeout_seconds": -1})
            )
        delivery_id = await publisher.start(request)  # published before the row broke
        handle = client.get_workflow_handle_for(WebhookDelivery.run, delivery_id)
        status = await wait_for_state(handle, DeliveryState.RETRYING)
        assert status.attempts == 1
        assert rx.requests == []  # nothing was sent
        async with engine.begin() as conn:
            await conn.execute(
                update(endpoints).where(endpoints.c.id == endpoint_id).values(settings={})
            )
        result = await asyncio.wait_for(handle.result(), BOUND_SECONDS)
        attempts = await handle.query(WebhookDelivery.attempts)
    assert result.state is DeliveryState.DELIVERED
    assert result.attempts == 2
    assert len(rx.requests) == 1
    failed, delivered = attempts
    assert failed.outcome is Outcome.RETRYABLE
    assert failed.error_kind is ErrorKind.INTERNAL
    assert failed.status_code is None
    assert "timeout_seconds" in (failed.error or "")
    assert delivered.status_code == 200


async def test_proxies_in_the_environment_are_never_used(
    client: Client,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    publisher: EndpointPublisher,
) -> None:
    async with Receiver() as proxy, Receiver() as endpoint:
        for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
            monkeypatch.setenv(var, proxy.url)
        monkeypatch.setenv("all_proxy", proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        # The worker (and its HTTP client) starts with the proxies set.
        async with running_worker(client, settings):
            delivery_id = await publisher.publish(
                endpoint_id=unique("ep_proxy"),
                url=endpoint.url + "/hook",
                event_type="stream.settled",
                data=settled(),
                retry=fast(0),
            )
            handle = client.get_workflow_handle_for(WebhookDelivery.run, delivery_id)
            result = await asyncio.wait_for(handle.result(), BOUND_SECONDS)
    assert result.state is DeliveryState.DELIVERED
    assert proxy.requests == []
    assert [r.path for r in endpoint.requests] == ["/hook"]
