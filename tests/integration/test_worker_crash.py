"""A worker killed with SIGKILL mid-run loses nothing once another worker takes over."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import defaultdict

import pytest
from temporalio.client import Client

from tests.conftest import SECRET
from tests.integration import (
    eventually,
    fast,
    settled,
    unique,
    verify,
    wait_for_state,
    worker_process,
)
from webhooks.config import Settings
from webhooks.core.ids import delivery_id
from webhooks.core.models import DeliveryState
from webhooks.dev.receiver import Behavior, Hang, ReceivedRequest, Receiver, Respond
from webhooks.publisher import WebhookPublisher
from worker import running_worker
from workflows.delivery import WebhookDelivery

RECOVERY_BOUND_SECONDS = 90.0
"""After a crash the server waits out the dead worker's workflow-task timeout (10 s) and
sticky-queue timeout (5 s) before another worker gets the work; this leaves ample room."""


@pytest.mark.parametrize("circuit", [False, True], ids=["circuit-off", "circuit-on"])
async def test_sigkilled_worker_loses_nothing(
    client: Client, settings: Settings, publisher: WebhookPublisher, circuit: bool
) -> None:
    # The hung first attempts must still be in flight at the kill however slow the machine:
    # the receiver hangs longer than the send timeout, which is far longer than publishing.
    # With the circuit on, its production defaults: these few failures never trip it.
    settings = settings.model_copy(update={"http_timeout_seconds": 60, "circuit_enabled": circuit})
    endpoint = unique("ep_crash")
    events = [unique("evt") for _ in range(6)]
    ids = [delivery_id(endpoint, e) for e in events]
    # Half are mid-request when the worker dies (the receiver hangs on their first attempt);
    # the other half got a 500 and wait on a durable timer far longer than the kill takes.
    hangers = set(ids[::2])
    answers: defaultdict[str, list[Behavior]] = defaultdict(list)

    def respond(request: ReceivedRequest) -> Behavior:
        did = request.headers["webhook-id"]
        n = len(answers[did]) + 1
        if n == 1:
            return Hang(90) if did in hangers else Respond(500)
        return Respond(500) if n == 2 and did in hangers else Respond(200)

    def record(request: ReceivedRequest, behavior: Behavior) -> None:
        answers[request.headers["webhook-id"]].append(behavior)

    async with Receiver(respond, on_request=record) as rx:
        async with worker_process(client, settings) as pid:
            for event_id, did in zip(events, ids, strict=True):
                await publisher.publish(
                    endpoint_id=endpoint,
                    url=rx.url,
                    event_type="stream.settled",
                    data=settled(settlement_id=event_id),
                    event_id=event_id,
                    retry=fast(0, 1, 1) if did in hangers else fast(0, 30, 1),
                )

            async def first_requests() -> int:
                return len(answers)

            await eventually(first_requests, lambda n: n == len(ids))
            for did in ids:
                handle = client.get_workflow_handle_for(WebhookDelivery.run, did)
                status = await wait_for_state(
                    handle,
                    DeliveryState.SENDING if did in hangers else DeliveryState.RETRYING,
                )
                assert status.attempts == (0 if did in hangers else 1)
            os.kill(pid, signal.SIGKILL)

        async with running_worker(client, settings):
            handles = [client.get_workflow_handle_for(WebhookDelivery.run, i) for i in ids]
            results = await asyncio.wait_for(
                asyncio.gather(*(h.result() for h in handles)), RECOVERY_BOUND_SECONDS
            )
            tables = [await h.query(WebhookDelivery.attempts) for h in handles]

    assert [r.state for r in results] == [DeliveryState.DELIVERED] * len(ids)
    by_id: defaultdict[str, list[ReceivedRequest]] = defaultdict(list)
    for request in rx.requests:
        by_id[request.headers["webhook-id"]].append(request)
    duplicates = {}
    for did, result, table in zip(ids, results, tables, strict=True):
        ok = [b for b in answers[did] if isinstance(b, Respond) and 200 <= b.status < 300]
        assert len(ok) == 1, f"{did}: ended with {len(ok)} 2xx answers"
        assert table[-1].status_code == 200
        assert result.attempts == len(table)
        # Every recorded attempt reached the receiver; the only extra request a delivery can
        # have is the one in flight when the worker died (its result died with the worker,
        # so the next worker sent that attempt again, same id and bytes).
        duplicates[did] = len(by_id[did]) - len(table)
        assert duplicates[did] == (1 if did in hangers else 0)
        # Every request, the re-sent one included: the same bytes, signed afresh, valid.
        first, *later = by_id[did]
        for again in later:
            assert again.body == first.body
            assert int(again.headers["webhook-timestamp"]) >= int(
                first.headers["webhook-timestamp"]
            )
        for request in by_id[did]:
            verify(request, SECRET)
    print(f"\ncrash: {len(ids)} deliveries, {sum(duplicates.values())} duplicate requests")
