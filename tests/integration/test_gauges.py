"""The backlog gauges: open dead letters by reason and circuits by phase, from visibility,
served on the worker's /metrics by the worker that refreshes them."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest
from temporalio.client import Client
from temporalio.service import RPCError

from tests.conftest import EndpointPublisher
from tests.integration import BOUND_SECONDS, unique
from tests.integration.scrape import Sample, metered, named, scrape_until, value
from webhooks.cli.app import serve_worker
from webhooks.config import Settings
from webhooks.core.circuit import CircuitInput, CircuitPhase, OperatorRequest
from webhooks.core.ids import circuit_id
from webhooks.core.models import DeadLetterReason, DeliveryResult, DeliveryState, RetrySchedule
from webhooks.core.names import CIRCUIT_WORKFLOW
from webhooks.dev.receiver import Receiver, Respond
from webhooks.ops.gauges import BacklogGauges


def backlog_seen(samples: list[Sample], exhausted: int, gone: int, disabled: int) -> bool:
    return (
        value(samples, "webhooks_dead_letters_open", reason="exhausted") == exhausted
        and value(samples, "webhooks_dead_letters_open", reason="gone") == gone
        and value(samples, "webhooks_circuits", phase="disabled") == disabled
    )


async def test_the_worker_refreshes_the_backlog_gauges(
    client: Client, settings: Settings, publisher: EndpointPublisher
) -> None:
    metered_client, metered_settings = await metered(client, settings)
    metered_settings = metered_settings.model_copy(update={"gauges_interval_seconds": 1})
    disabled = unique("ep_off")
    stop = asyncio.Event()
    serving = asyncio.create_task(serve_worker(metered_client, metered_settings, stop))
    try:
        endpoints = publisher.on(metered_client, metered_settings.task_queue)
        async with Receiver(lambda r: Respond(410 if "gone" in r.path else 500)) as rx:
            ids = [
                await endpoints.publish(
                    endpoint_id=unique("ep_gauge"),
                    url=f"{rx.url}/{path}",
                    event_type="test.gauges",
                    data={},
                    retry=RetrySchedule(schedule_seconds=[0], jitter=0),
                )
                for path in ("exhausted", "gone")
            ]
            for delivery_id in ids:
                handle = metered_client.get_workflow_handle(delivery_id, result_type=DeliveryResult)
                result = await asyncio.wait_for(handle.result(), BOUND_SECONDS)
                assert result.state is DeliveryState.DEAD_LETTERED
        await metered_client.start_workflow(
            CIRCUIT_WORKFLOW,
            CircuitInput(endpoint_id=disabled, config=metered_settings.circuit),
            id=circuit_id(disabled),
            task_queue=metered_settings.task_queue,
            start_signal="disable",
            start_signal_args=[OperatorRequest(requested_by="test", reason="gauges")],
        )
        samples = await scrape_until(metered_settings, lambda s: backlog_seen(s, 1, 1, 1))
    finally:
        stop.set()
        await asyncio.wait_for(serving, BOUND_SECONDS)
        with contextlib.suppress(RPCError):
            await metered_client.get_workflow_handle(circuit_id(disabled)).terminate()

    # Every reason and phase has its series, zeros included; the labels hold no ids.
    open_letters = named(samples, "webhooks_dead_letters_open")
    assert {s.labels["reason"] for s in open_letters} == {r.value for r in DeadLetterReason}
    assert sum(s.value for s in open_letters) == 2
    circuits = named(samples, "webhooks_circuits")
    assert {s.labels["phase"] for s in circuits} == {p.value for p in CircuitPhase}
    assert sum(s.value for s in circuits) == 1
    for sample in [*open_letters, *circuits]:
        assert set(sample.labels) <= {"reason", "phase", "service_name"}
    (refreshed,) = named(samples, "webhooks_gauges_refreshed_timestamp_seconds")
    assert refreshed.value > 0


async def test_a_failed_refresh_is_logged_and_retried(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    config = client.config()
    config["namespace"] = "no-such-namespace"
    gauges = BacklogGauges(Client(**config))
    stop = asyncio.Event()
    with caplog.at_level(logging.WARNING, logger="webhooks.ops.gauges"):
        running = asyncio.create_task(gauges.run(0.05, stop))
        for _ in range(100):
            if len(caplog.records) >= 2:
                break
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.wait_for(running, BOUND_SECONDS)
    assert len(caplog.records) >= 2  # it kept trying
    assert all("backlog gauges not refreshed" in r.getMessage() for r in caplog.records)
