"""Prometheus metrics through Temporal's runtime: the product's counters count exactly what
happened, once, and a worker replaying a workflow's history does not count it again."""

from __future__ import annotations

import asyncio
import re
import socket

import httpx
from temporalio.client import Client

from tests.integration import BOUND_SECONDS, eventually, fast, unique, worker_process
from webhooks.config import Settings
from webhooks.core.models import (
    DeadLetterReason,
    DeadLetterState,
    DeliveryState,
    DiscardRequest,
)
from webhooks.dev.receiver import ReceivedRequest, Receiver, Respond
from webhooks.publisher import WebhookPublisher
from workflows.dead_letter import DeadLetter
from workflows.delivery import WebhookDelivery


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def samples(text: str, name: str) -> dict[str, float]:
    """`{"reason=...,state=...": value}` of one product counter in Prometheus' text format
    (only the product's own labels; the SDK adds namespace, task queue and workflow type)."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line[len(name) :].rsplit(" ", 1)
            own = dict(re.findall(r'(\w+)="([^"]*)"', labels))
            key = ",".join(f"{k}={own[k]}" for k in ("reason", "state") if k in own)
            found[key] = float(value)
    return found


async def scrape(address: str) -> str:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"http://{address}/metrics")).text


async def test_counters_count_each_event_once_and_replay_counts_nothing(
    client: Client, settings: Settings, publisher: WebhookPublisher
) -> None:
    def answer(request: ReceivedRequest) -> Respond:
        return Respond(410 if "gone" in request.path else 500)

    letters: dict[str, str] = {}
    async with Receiver(answer) as rx:
        first = f"127.0.0.1:{free_port()}"
        async with worker_process(client, settings, WEBHOOKS_METRICS_BIND_ADDRESS=first):
            for name, path in [("a", "/fail"), ("b", "/fail"), ("c", "/fail"), ("d", "/gone")]:
                delivery_id = await publisher.publish(
                    endpoint_id=unique("ep_metrics"),
                    url=rx.url + path,
                    event_type="test.metrics",
                    data={},
                    retry=fast(0, 0.1),
                )
                handle = client.get_workflow_handle_for(WebhookDelivery.run, delivery_id)
                result = await asyncio.wait_for(handle.result(), BOUND_SECONDS)
                assert result.state is DeliveryState.DEAD_LETTERED
                assert result.dead_letter_id is not None
                letters[name] = result.dead_letter_id
            discarded = client.get_workflow_handle_for(DeadLetter.run, letters["a"])
            await discarded.signal(DeadLetter.discard, DiscardRequest(requested_by="test"))
            assert (await discarded.result()).state is DeadLetterState.DISCARDED

            closed = "reason=exhausted,state=discarded"
            text = await eventually(
                lambda: scrape(first),
                lambda t: closed in samples(t, "webhooks_dead_letters_closed"),
            )
            # A fresh runtime: every counter equals what happened, no more.
            assert samples(text, "webhooks_dead_letters_opened") == {
                f"reason={DeadLetterReason.EXHAUSTED.value}": 3,
                f"reason={DeadLetterReason.GONE.value}": 1,
            }
            assert samples(text, "webhooks_dead_letters_closed") == {closed: 1}
        assert len(rx.requests) == 3 * 2 + 1

        # A new worker process replays the open dead letters from their histories to answer
        # queries: replay must not count them a second time.
        second = f"127.0.0.1:{free_port()}"
        async with worker_process(client, settings, WEBHOOKS_METRICS_BIND_ADDRESS=second):
            for name in ("b", "c", "d"):
                letter = client.get_workflow_handle_for(DeadLetter.run, letters[name])
                view = await letter.query(DeadLetter.entry)
                assert view.state is DeadLetterState.OPEN
            # Control: this runtime does count what happens now.
            letter = client.get_workflow_handle_for(DeadLetter.run, letters["d"])
            await letter.signal(DeadLetter.discard, DiscardRequest(requested_by="test"))
            await asyncio.wait_for(letter.result(), BOUND_SECONDS)
            gone = "reason=gone,state=discarded"
            text = await eventually(
                lambda: scrape(second),
                lambda t: gone in samples(t, "webhooks_dead_letters_closed"),
            )
            assert samples(text, "webhooks_dead_letters_opened") == {}
            assert samples(text, "webhooks_dead_letters_closed") == {gone: 1}
