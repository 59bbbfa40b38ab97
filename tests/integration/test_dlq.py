"""The dead-letter queue against the real dev server and a real HTTP receiver: redeliver,
discard, racing operators, a redelivery that fails again, and a receiver that is down."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from collections.abc import Awaitable
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, RPCError, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.service import RPCStatusCode

from tests.conftest import SECRET, EndpointPublisher
from tests.integration import BOUND_SECONDS, eventually, fast, listed, unique, verify
from webhooks.config import Settings
from webhooks.core import search_attributes as sa
from webhooks.core.ids import dead_letter_id
from webhooks.core.models import (
    DeadLetterReason,
    DeadLetterState,
    DeadLetterView,
    DeliveryOptions,
    DeliveryResult,
    DeliveryState,
    DiscardRequest,
    Outcome,
    RedeliverRequest,
    RetrySchedule,
)
from webhooks.core.names import DELIVERY_WORKFLOW
from webhooks.dev.receiver import (
    Behavior,
    Drop,
    ReceivedRequest,
    Receiver,
    Respond,
    Responder,
    scripted,
)
from webhooks.ops.dead_letters import DeadLetterFilter, count_open_by_reason, list_dead_letters
from worker import running_worker
from workflows.dead_letter import DeadLetter
from workflows.delivery import WebhookDelivery

REPO = Path(__file__).resolve().parents[2]
WEBHOOKS_CLI = Path(sys.executable).parent / "webhooks"
"""The installed console script: what an operator runs."""

DeadLetterHandle = WorkflowHandle[DeadLetter, DeadLetterView]
DeliveryHandle = WorkflowHandle[WebhookDelivery, DeliveryResult]


async def dead_lettered(
    client: Client,
    publisher: EndpointPublisher,
    rx: Receiver,
    *,
    endpoint: str,
    retry: RetrySchedule,
    event_type: str = "dlq.test",
) -> tuple[str, DeadLetterHandle]:
    """Publish one event that the receiver's script makes fail; wait for its dead letter."""
    delivery_id = await publisher.publish(
        endpoint_id=endpoint,
        url=rx.url + "/hook",
        event_type=event_type,
        data={"endpoint": endpoint},
        event_id=unique("evt"),
        retry=retry,
    )
    delivery = client.get_workflow_handle_for(WebhookDelivery.run, delivery_id)
    result = await asyncio.wait_for(delivery.result(), BOUND_SECONDS)
    assert result.state is DeliveryState.DEAD_LETTERED
    assert result.dead_letter_id == dead_letter_id(delivery_id, 0)
    return delivery_id, client.get_workflow_handle_for(DeadLetter.run, result.dead_letter_id)


def latest_run(client: Client, delivery_id: str) -> DeliveryHandle:
    """The newest run of a delivery id (a redelivery is a new run under the same id)."""
    return client.get_workflow_handle_for(WebhookDelivery.run, delivery_id)


async def history_count(handle: DeadLetterHandle, event_type: EventType.ValueType) -> int:
    return len([e async for e in handle.fetch_history_events() if e.event_type == event_type])


async def signal_if_open(signalling: Awaitable[None]) -> bool:
    """Send a signal; False if the workflow had already closed (Temporal says NOT_FOUND)."""
    try:
        await signalling
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        return False
    return True


async def child_runs_started(handle: DeadLetterHandle) -> int:
    """How many child workflows a dead letter actually started, from its event history."""
    return await history_count(handle, EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED)


def recording(responder: Responder) -> tuple[Receiver, list[ReceivedRequest]]:
    """A receiver, and the list of requests it answered with a 2xx."""
    ok: list[ReceivedRequest] = []

    def record(request: ReceivedRequest, behavior: Behavior) -> None:
        if isinstance(behavior, Respond) and 200 <= behavior.status < 300:
            ok.append(request)

    return Receiver(responder, on_request=record), ok


def of(requests: list[ReceivedRequest], delivery_id: str) -> list[ReceivedRequest]:
    return [r for r in requests if r.headers["webhook-id"] == delivery_id]


async def test_redeliver_sends_the_same_message_again_and_points_at_the_new_run(
    client: Client, worker: None, publisher: EndpointPublisher
) -> None:
    endpoint = unique("ep_redeliver")
    async with Receiver(scripted(Respond(500), Respond(503))) as rx:
        delivery_id, dead_letter = await dead_lettered(
            client, publisher, rx, endpoint=endpoint, retry=fast(0, 0.1)
        )
        first_run = (await latest_run(client, delivery_id).describe()).run_id
        assert len(rx.requests) == 2

        await dead_letter.signal(DeadLetter.redeliver, RedeliverRequest(requested_by="alice"))
        view = await asyncio.wait_for(dead_letter.result(), BOUND_SECONDS)
        redelivery = latest_run(client, delivery_id)
        result = await asyncio.wait_for(redelivery.result(), BOUND_SECONDS)

    assert result.state is DeliveryState.DELIVERED
    assert result.attempts == 1
    assert result.last_status_code == 200

    # The dead letter records who redelivered, when, and which run it started.
    assert view.state is DeadLetterState.REDELIVERED
    assert view.acted_by == "alice"
    assert view.acted_at is not None
    assert view.acted_at >= view.entry.dead_lettered_at
    assert view.redelivery_id == delivery_id
    new_run = (await redelivery.describe()).run_id
    assert new_run != first_run
    assert view.redelivery_run_id == new_run
    assert await dead_letter.query(DeadLetter.entry) == view  # still answers once closed
    # Handed over with the default retention (its expiry is tested under time skipping).
    assert view.entry.retention_seconds == 30 * 86400
    assert (await dead_letter.describe()).typed_search_attributes.get(sa.STATUS) == "redelivered"

    # The customer sees the same message: one webhook-id, the same bytes, valid signatures.
    requests = rx.requests
    assert len(requests) == 3
    assert {r.headers["webhook-id"] for r in requests} == {delivery_id}
    assert {r.body for r in requests} == {requests[0].body}
    assert requests[0].body == view.entry.request.body.encode()
    for request in requests:
        verify(request, SECRET)

    # The new run's attempt table holds both runs; the first run's still holds only its own.
    attempts = await redelivery.query(WebhookDelivery.attempts)
    assert [(a.generation, a.number, a.status_code) for a in attempts] == [
        (0, 1, 500),
        (0, 2, 503),
        (1, 1, 200),
    ]
    assert attempts[-1].outcome is Outcome.DELIVERED
    old = client.get_workflow_handle_for(WebhookDelivery.run, delivery_id, run_id=first_run)
    assert [a.generation for a in await old.query(WebhookDelivery.attempts)] == [0, 0]
    status = await redelivery.query(WebhookDelivery.status)
    assert status.state is DeliveryState.DELIVERED
    assert status.attempts == 1

    runs = await listed(client, f"WorkflowId='{delivery_id}'", expect=2)
    assert {wf.run_id for wf in runs} == {first_run, new_run}


async def test_two_redelivers_back_to_back_deliver_once(
    client: Client, worker: None, publisher: EndpointPublisher
) -> None:
    rx, ok = recording(scripted(Respond(500)))
    async with rx:
        delivery_id, dead_letter = await dead_lettered(
            client, publisher, rx, endpoint=unique("ep_twice"), retry=fast(0)
        )
        await dead_letter.signal(DeadLetter.redeliver, RedeliverRequest(requested_by="first"))
        # The second lands while the first is being acted on, or after: ignored either way.
        await signal_if_open(
            dead_letter.signal(DeadLetter.redeliver, RedeliverRequest(requested_by="second"))
        )
        view = await asyncio.wait_for(dead_letter.result(), BOUND_SECONDS)
        result = await asyncio.wait_for(latest_run(client, delivery_id).result(), BOUND_SECONDS)

    assert view.state is DeadLetterState.REDELIVERED
    assert view.acted_by == "first"
    assert result.state is DeliveryState.DELIVERED
    assert await child_runs_started(dead_letter) == 1
    assert len(rx.requests) == 2
    assert len(of(ok, delivery_id)) == 1
    runs = await listed(client, f"WorkflowId='{delivery_id}'", expect=2)
    assert len(runs) == 2


async def test_racing_operators_yield_one_redelivery(
    client: Client, worker: None, publisher: EndpointPublisher, settings: Settings
) -> None:
    """Two operators run the CLI at the same moment as a service calls the API."""
    rx, ok = recording(scripted(Respond(500)))
    async with rx:
        delivery_id, dead_letter = await dead_lettered(
            client, publisher, rx, endpoint=unique("ep_race"), retry=fast(0)
        )
        env = {
            **os.environ,
            "TEMPORAL_ADDRESS": client.service_client.config.target_host,
            "TEMPORAL_NAMESPACE": client.namespace,
            "WEBHOOKS_TASK_QUEUE": settings.task_queue,
        }

        async def cli(by: str) -> tuple[int, str]:
            proc = await asyncio.create_subprocess_exec(
                str(WEBHOOKS_CLI),
                "dlq",
                "redeliver",
                dead_letter.id,
                "--by",
                by,
                "--json",
                cwd=REPO,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, stderr.decode()
            return proc.returncode, stdout.decode()

        (_, bob), (_, carol), _ = await asyncio.gather(
            cli("bob"),
            cli("carol"),
            signal_if_open(
                dead_letter.signal(DeadLetter.redeliver, RedeliverRequest(requested_by="service"))
            ),
        )
        view = await asyncio.wait_for(dead_letter.result(), BOUND_SECONDS)
        result = await asyncio.wait_for(latest_run(client, delivery_id).result(), BOUND_SECONDS)

    assert view.state is DeadLetterState.REDELIVERED
    assert view.acted_by in {"bob", "carol", "service"}
    assert result.state is DeliveryState.DELIVERED
    assert await child_runs_started(dead_letter) == 1
    assert len(of(ok, delivery_id)) == 1
    assert len(rx.requests) == 2
    # Each CLI either signalled (and was ignored if late) or found the dead letter closed.
    for output in (bob, carol):
        summary = json.loads(output)
        assert summary["signalled"] + summary["already_closed"] == [dead_letter.id]
        assert summary["failed"] == {}
    runs = await listed(client, f"WorkflowId='{delivery_id}'", expect=2)
    assert len(runs) == 2


async def test_discard_closes_it_and_a_later_redeliver_is_ignored(
    client: Client, worker: None, publisher: EndpointPublisher
) -> None:
    async with Receiver(scripted(Respond(500))) as rx:
        delivery_id, dead_letter = await dead_lettered(
            client, publisher, rx, endpoint=unique("ep_discard"), retry=fast(0)
        )
        await dead_letter.signal(
            DeadLetter.discard, DiscardRequest(requested_by="dave", reason="customer gone")
        )
        view = await asyncio.wait_for(dead_letter.result(), BOUND_SECONDS)
        # Closed: Temporal refuses the signal, so nothing can be redelivered any more.
        assert not await signal_if_open(
            dead_letter.signal(DeadLetter.redeliver, RedeliverRequest(requested_by="eve"))
        )
        assert await dead_letter.query(DeadLetter.entry) == view

    assert view.state is DeadLetterState.DISCARDED
    assert view.acted_by == "dave"
    assert view.note == "customer gone"
    assert view.acted_at is not None
    assert view.redelivery_id is None
    assert (await dead_letter.describe()).typed_search_attributes.get(sa.STATUS) == "discarded"
    assert await child_runs_started(dead_letter) == 0
    assert len(rx.requests) == 1
    [run] = await listed(client, f"WorkflowId='{delivery_id}'")
    assert run.status is WorkflowExecutionStatus.COMPLETED


async def test_signals_that_arrive_together_first_action_wins(
    client: Client, settings: Settings, publisher: EndpointPublisher
) -> None:
    """Signals queued while no worker runs reach the dead letter in one batch: the first of
    them wins and the rest are ignored, whatever they ask."""
    async with Receiver(scripted(Respond(500), Respond(500), Respond(500))) as rx:
        async with running_worker(client, settings):
            twice_id, twice = await dead_lettered(
                client, publisher, rx, endpoint=unique("ep_together"), retry=fast(0)
            )
            discarded_id, discarded = await dead_lettered(
                client, publisher, rx, endpoint=unique("ep_together"), retry=fast(0)
            )
            redelivered_id, redelivered = await dead_lettered(
                client, publisher, rx, endpoint=unique("ep_together"), retry=fast(0)
            )
        await twice.signal(DeadLetter.redeliver, RedeliverRequest(requested_by="first"))
        await twice.signal(DeadLetter.redeliver, RedeliverRequest(requested_by="second"))
        await twice.signal("redeliver")  # no input, as `temporal workflow signal` may send
        await discarded.signal(DeadLetter.discard)
        await discarded.signal(DeadLetter.redeliver, RedeliverRequest(requested_by="late"))
        await redelivered.signal(DeadLetter.redeliver)
        await redelivered.signal(DeadLetter.discard, DiscardRequest(requested_by="late"))
        async with running_worker(client, settings):
            views = await asyncio.wait_for(
                asyncio.gather(twice.result(), discarded.result(), redelivered.result()),
                BOUND_SECONDS,
            )
            results = await asyncio.wait_for(
                asyncio.gather(
                    latest_run(client, twice_id).result(),
                    latest_run(client, redelivered_id).result(),
                ),
                BOUND_SECONDS,
            )

    assert [(v.state, v.acted_by) for v in views] == [
        (DeadLetterState.REDELIVERED, "first"),
        (DeadLetterState.DISCARDED, "unknown"),  # no input: the defaults apply
        (DeadLetterState.REDELIVERED, "unknown"),
    ]
    assert [r.state for r in results] == [DeliveryState.DELIVERED] * 2
    assert [await child_runs_started(h) for h in (twice, discarded, redelivered)] == [1, 0, 1]
    webhook_ids = Counter(r.headers["webhook-id"] for r in rx.requests)
    assert webhook_ids == {twice_id: 2, discarded_id: 1, redelivered_id: 2}


async def test_redelivery_that_fails_again_opens_a_new_dead_letter_with_both_histories(
    client: Client, worker: None, publisher: EndpointPublisher
) -> None:
    endpoint = unique("ep_again")
    # Two failures in the first run, three in the redelivery, then it recovers.
    async with Receiver(scripted(*[Respond(500)] * 5)) as rx:
        delivery_id, first = await dead_lettered(
            client, publisher, rx, endpoint=endpoint, retry=fast(0, 0.1)
        )
        # A redelivery may bring its own schedule: three attempts this time.
        await first.signal(
            DeadLetter.redeliver, RedeliverRequest(requested_by="alice", retry=fast(0, 0.1, 0.1))
        )
        first_view = await asyncio.wait_for(first.result(), BOUND_SECONDS)
        second_result = await asyncio.wait_for(
            latest_run(client, delivery_id).result(), BOUND_SECONDS
        )
        assert second_result.state is DeliveryState.DEAD_LETTERED
        assert second_result.attempts == 3
        assert second_result.dead_letter_id == f"{delivery_id}-dlq-1"

        second = client.get_workflow_handle_for(DeadLetter.run, second_result.dead_letter_id)
        entry = (await second.query(DeadLetter.entry)).entry
        assert entry.reason is DeadLetterReason.EXHAUSTED
        assert entry.request.generation == 1
        assert entry.request.body == first_view.entry.request.body
        assert [(a.generation, a.number) for a in entry.attempts] == [
            (0, 1),
            (0, 2),
            (1, 1),
            (1, 2),
            (1, 3),
        ]
        assert entry.attempts[:2] == first_view.entry.attempts

        # Both dead letters of the delivery are visible; only the new one is open.
        query = DeadLetterFilter(endpoint_id=endpoint, state=None).query()
        found = await listed(client, query, expect=2)
        assert {wf.id for wf in found} == {first.id, second.id}
        open_now = await eventually(
            lambda: list_dead_letters(client, DeadLetterFilter(endpoint_id=endpoint)),
            lambda rows: [row.dead_letter_id for row in rows] == [second.id],
        )
        assert open_now[0].reason == "exhausted"

        # The third run (generation 2) delivers, carrying all five earlier attempts.
        await second.signal(DeadLetter.redeliver, RedeliverRequest(requested_by="bob"))
        second_view = await asyncio.wait_for(second.result(), BOUND_SECONDS)
        third = latest_run(client, delivery_id)
        assert (await asyncio.wait_for(third.result(), BOUND_SECONDS)).state == "delivered"
        attempts = await third.query(WebhookDelivery.attempts)

    assert second_view.redelivery_run_id == (await third.describe()).run_id
    assert [a.generation for a in attempts] == [0, 0, 1, 1, 1, 2]
    assert [a.status_code for a in attempts] == [500] * 5 + [200]
    assert len(rx.requests) == 6
    assert {r.headers["webhook-id"] for r in rx.requests} == {delivery_id}
    assert len({r.body for r in rx.requests}) == 1


async def test_redeliver_waits_for_a_run_that_has_not_closed_yet(
    client: Client, worker: None, publisher: EndpointPublisher, settings: Settings
) -> None:
    """While the delivery id is still taken by a running run, the redelivery waits for it
    to close instead of failing (in production: the run that is handing over to us)."""
    async with Receiver(scripted(Respond(500), Respond(500))) as rx:
        delivery_id, dead_letter = await dead_lettered(
            client, publisher, rx, endpoint=unique("ep_busy"), retry=fast(0)
        )
        # Occupy the delivery id with a run that waits an hour before its second attempt.
        request = (await dead_letter.query(DeadLetter.entry)).entry.request
        busy = await client.start_workflow(
            DELIVERY_WORKFLOW,
            request.model_copy(update={"options": DeliveryOptions(retry=fast(0, 3600))}),
            id=delivery_id,
            task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            result_type=DeliveryResult,
        )
        await eventually(lambda: busy.query(WebhookDelivery.status), lambda s: s.attempts == 1)

        await dead_letter.signal(DeadLetter.redeliver, RedeliverRequest(requested_by="alice"))
        await eventually(
            lambda: history_count(
                dead_letter, EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_FAILED
            ),
            lambda failed: failed >= 1,
        )
        waiting = await dead_letter.query(DeadLetter.entry)
        assert waiting.state is DeadLetterState.OPEN
        assert (await dead_letter.describe()).status is WorkflowExecutionStatus.RUNNING

        await busy.signal(WebhookDelivery.retry_now)
        assert (
            await asyncio.wait_for(busy.result(), BOUND_SECONDS)
        ).state is DeliveryState.DELIVERED
        view = await asyncio.wait_for(dead_letter.result(), BOUND_SECONDS)
        redelivery = latest_run(client, delivery_id)
        result = await asyncio.wait_for(redelivery.result(), BOUND_SECONDS)

    assert view.state is DeadLetterState.REDELIVERED
    assert view.redelivery_run_id == (await redelivery.describe()).run_id
    assert view.redelivery_run_id != busy.result_run_id
    assert result.state is DeliveryState.DELIVERED
    assert await child_runs_started(dead_letter) == 1
    assert len(rx.requests) == 4  # first run, busy run x2, redelivery


async def test_receiver_down_for_a_while_every_event_is_delivered_or_dead_lettered_once(
    client: Client, worker: None, publisher: EndpointPublisher
) -> None:
    endpoint, events = unique("ep_outage"), 20
    down, flip = True, False

    def outage(_: ReceivedRequest) -> Behavior:
        nonlocal flip
        flip = not flip
        if not down:
            return Respond(200)
        return Respond(503) if flip else Drop()

    rx, ok = recording(outage)
    async with rx:

        async def publish(index: int) -> str:
            await asyncio.sleep(index * 0.15)  # a steady stream of events through the outage
            return await publisher.publish(
                endpoint_id=endpoint,
                url=rx.url,
                event_type="dlq.test",
                data={"n": index},
                event_id=f"evt_{index}",
                retry=fast(0, 0.25, 0.5, 1),  # four attempts over ~1.75 s
            )

        async def recover(first: DeliveryHandle) -> None:
            nonlocal down
            # Down for at least 3 s and until the first event has given up, so the outcome
            # is mixed (some dead-lettered, some delivered) however loaded the machine is.
            await asyncio.sleep(3)
            await asyncio.wait_for(first.result(), BOUND_SECONDS)
            down = False

        first = asyncio.create_task(publish(0))
        recovery = asyncio.create_task(recover(latest_run(client, await first)))
        ids = [await first, *await asyncio.gather(*(publish(i) for i in range(1, events)))]
        await recovery
        results = await asyncio.wait_for(
            asyncio.gather(*(latest_run(client, d).result() for d in ids)), BOUND_SECONDS
        )

    assert len(set(ids)) == events
    delivered = {r.delivery_id for r in results if r.state is DeliveryState.DELIVERED}
    dead = {r.delivery_id for r in results if r.state is DeliveryState.DEAD_LETTERED}
    assert delivered | dead == set(ids)
    assert not delivered & dead
    assert delivered, "the receiver recovered, so later events must get through"
    assert dead, "the first event exhausted its attempts while the receiver was down"
    assert all(
        r.dead_letter_reason is DeadLetterReason.EXHAUSTED for r in results if r.delivery_id in dead
    )

    # The receiver acknowledged each delivered event exactly once, and no dead-lettered one.
    acknowledged = Counter(r.headers["webhook-id"] for r in ok)
    assert acknowledged == Counter(delivered)

    # The queue holds exactly the events that were not delivered: nothing missing, no doubles.
    where = DeadLetterFilter(endpoint_id=endpoint)
    expected = {dead_letter_id(d, 0) for d in dead}
    rows = await eventually(
        lambda: list_dead_letters(client, where), lambda rows: len(rows) >= len(expected)
    )
    assert sorted(row.dead_letter_id for row in rows) == sorted(expected)
    counts = await eventually(
        lambda: count_open_by_reason(client, where), lambda c: sum(c.values()) >= len(dead)
    )
    assert counts == {"exhausted": len(dead)}
    assert len(dead) == events - len(delivered)
