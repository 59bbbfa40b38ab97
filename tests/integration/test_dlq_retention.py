"""Dead-letter retention under the time-skipping test server: an unattended dead letter
closes as `expired` after 30 days (or its own retention), and the metric counters an alert
reads record it opening and closing.

Two quirks of the test server (not of the product) shape this module:
- it knows no custom search attributes until they are added through its operator service (it
  rejects a start that sets unknown ones); once added, `DeadLetter`'s upserts work as on the
  real server;
- it never skips time for a child workflow whose parent has closed (temporalio/sdk-java#1540):
  a `DeadLetter` started by its delivery would wait 30 days of wall-clock time. So these tests
  start `DeadLetter` directly, with the entry a delivery hands over; that the delivery hands
  over the default retention is checked on the real dev server (`test_dlq.py`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import BufferedMetricUpdate, MetricBuffer, Runtime, TelemetryConfig
from temporalio.testing import WorkflowEnvironment

from tests.conftest import BIN, EndpointPublisher
from tests.integration import BOUND_SECONDS, endpoint_record, fast, unique
from webhooks.config import Settings
from webhooks.core import search_attributes as sa
from webhooks.core.ids import dead_letter_id
from webhooks.core.models import (
    DeadLetterEntry,
    DeadLetterReason,
    DeadLetterState,
    DeadLetterView,
    DeliveryState,
    RedeliverRequest,
)
from webhooks.dev.receiver import Receiver
from webhooks.publisher import build_request
from worker import running_worker
from workflows.dead_letter import DeadLetter
from workflows.delivery import WebhookDelivery

DAY = timedelta(days=1)
DEFAULT_RETENTION = timedelta(seconds=DeadLetterEntry.model_fields["retention_seconds"].default)
EVENT = "dlq.retention"


class Skipping:
    def __init__(self, env: WorkflowEnvironment, metrics: MetricBuffer) -> None:
        self.env = env
        self.metrics = metrics
        self.updates: list[BufferedMetricUpdate] = []

    def counter(self, name: str, **labels: str) -> int:
        """The total a counter reached for these labels, over everything emitted so far."""
        self.updates += self.metrics.retrieve_updates()
        return sum(
            int(u.value)
            for u in self.updates
            if u.metric.name == name and labels.items() <= dict(u.attributes).items()
        )


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The endpoint circuit breaker has nothing to do with retention; keep it out of the way."""
    return settings.model_copy(update={"circuit_enabled": False})


@pytest.fixture(scope="module")
async def skipping() -> AsyncIterator[Skipping]:
    metrics = MetricBuffer(10_000)
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(BIN / "temporal-test-server"),
        data_converter=pydantic_data_converter,
        runtime=Runtime(telemetry=TelemetryConfig(metrics=metrics)),
    )
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={
                key.name: IndexedValueType.Value(
                    f"INDEXED_VALUE_TYPE_{key.indexed_value_type.name}"
                )
                for key in sa.ALL
            },
        )
    )
    yield Skipping(env, metrics)
    await env.shutdown()


def dead_letter_entry(
    reason: DeadLetterReason = DeadLetterReason.EXHAUSTED,
    url: str = "http://127.0.0.1:9/never",
    **retention: float,
) -> DeadLetterEntry:
    """What a delivery that gave up hands over (`retention_seconds` left to its default)."""
    request = build_request(
        endpoint=endpoint_record(unique("ep_retention"), url),
        event_type=EVENT,
        data={"n": 1},
        event_id=unique("evt"),
        retry=fast(0),
    )
    return DeadLetterEntry(
        dead_letter_id=dead_letter_id(request.delivery_id, 0),
        request=request,
        attempts=[],
        reason=reason,
        dead_lettered_at=datetime.now(UTC),
        **retention,
    )


async def start(
    skipping: Skipping, settings: Settings, entry: DeadLetterEntry
) -> WorkflowHandle[DeadLetter, DeadLetterView]:
    """Start a dead letter the way `WebhookDelivery` does (same id and search attributes)."""
    return await skipping.env.client.start_workflow(
        DeadLetter.run,
        entry,
        id=entry.dead_letter_id,
        task_queue=settings.task_queue,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(sa.ENDPOINT_ID, entry.request.endpoint_id),
                SearchAttributePair(sa.EVENT_TYPE, entry.request.event_type),
                SearchAttributePair(sa.STATUS, DeadLetterState.OPEN.value),
                SearchAttributePair(sa.DEAD_LETTER_REASON, entry.reason.value),
            ]
        ),
    )


async def test_unattended_dead_letter_expires_after_thirty_days(
    skipping: Skipping, settings: Settings
) -> None:
    env = skipping.env
    entry = dead_letter_entry()
    assert timedelta(seconds=entry.retention_seconds) == timedelta(days=30)
    opened_before = skipping.counter("webhooks_dead_letters_opened", reason="exhausted")
    closed_before = skipping.counter(
        "webhooks_dead_letters_closed", reason="exhausted", state="expired"
    )
    async with running_worker(env.client, settings):
        handle = await start(skipping, settings, entry)
        started = await env.get_current_time()

        # A day short of the retention it is still open, and still listed as such.
        await env.sleep(DEFAULT_RETENTION - DAY)
        assert (await handle.query(DeadLetter.entry)).state is DeadLetterState.OPEN
        attrs = (await handle.describe()).typed_search_attributes
        assert attrs.get(sa.STATUS) == "dead_lettered"
        assert skipping.counter("webhooks_dead_letters_opened", reason="exhausted") == (
            opened_before + 1
        )

        view = await asyncio.wait_for(handle.result(), BOUND_SECONDS)
        elapsed = await env.get_current_time() - started

    assert view.state is DeadLetterState.EXPIRED
    assert view.acted_by == "system"
    assert view.note == "retention period elapsed"
    assert view.redelivery_id is None
    assert view.acted_at is not None
    assert DEFAULT_RETENTION <= elapsed < DEFAULT_RETENTION + DAY
    attrs = (await handle.describe()).typed_search_attributes
    assert attrs.get(sa.STATUS) == "expired"
    assert attrs.get(sa.DEAD_LETTER_REASON) == "exhausted"
    assert attrs.get(sa.ENDPOINT_ID) == entry.request.endpoint_id
    # The counters an alert reads: open = opened - closed, per reason.
    assert skipping.counter(
        "webhooks_dead_letters_closed", reason="exhausted", state="expired"
    ) == (closed_before + 1)


async def test_custom_retention(skipping: Skipping, settings: Settings) -> None:
    env = skipping.env
    retention = timedelta(days=3)
    entry = dead_letter_entry(DeadLetterReason.GONE, retention_seconds=retention.total_seconds())
    closed_before = skipping.counter("webhooks_dead_letters_closed", reason="gone")
    async with running_worker(env.client, settings):
        handle = await start(skipping, settings, entry)
        started = await env.get_current_time()
        await env.sleep(retention - timedelta(hours=1))
        assert (await handle.query(DeadLetter.entry)).state is DeadLetterState.OPEN
        view = await asyncio.wait_for(handle.result(), BOUND_SECONDS)
        elapsed = await env.get_current_time() - started

    assert view.state is DeadLetterState.EXPIRED
    assert retention <= elapsed < DEFAULT_RETENTION
    assert (await handle.describe()).typed_search_attributes.get(sa.STATUS) == "expired"
    assert skipping.counter("webhooks_dead_letters_closed", reason="gone", state="expired") == (
        closed_before + 1
    )


async def test_redeliver_late_in_the_retention_period(
    skipping: Skipping, settings: Settings, publisher: EndpointPublisher
) -> None:
    """Acting on day 29 still works; the dead letter then closes for good."""
    env = skipping.env
    async with running_worker(env.client, settings), Receiver() as rx:
        entry = dead_letter_entry(url=rx.url)
        await publisher.endpoint(entry.request.endpoint_id, rx.url)
        handle = await start(skipping, settings, entry)
        await env.sleep(DEFAULT_RETENTION - DAY)
        await handle.signal(DeadLetter.redeliver, RedeliverRequest(requested_by="alice"))
        view = await asyncio.wait_for(handle.result(), BOUND_SECONDS)
        redelivery = env.client.get_workflow_handle_for(
            WebhookDelivery.run, entry.request.delivery_id, run_id=view.redelivery_run_id
        )
        result = await asyncio.wait_for(redelivery.result(), BOUND_SECONDS)

    assert view.state is DeadLetterState.REDELIVERED
    assert view.acted_by == "alice"
    assert result.state is DeliveryState.DELIVERED
    assert [r.headers["webhook-id"] for r in rx.requests] == [entry.request.delivery_id]
    assert rx.requests[0].body == entry.request.body.encode()
    closed = await handle.describe()
    assert closed.status is WorkflowExecutionStatus.COMPLETED  # no expiry timer left
    assert closed.typed_search_attributes.get(sa.STATUS) == "redelivered"
