"""The delivery metrics, scraped from a real worker's /metrics
after a known scenario: the counters and histogram counts equal what happened, and no
label holds an id."""

from __future__ import annotations

import asyncio

from temporalio.client import Client

from tests.conftest import EndpointPublisher
from tests.integration import BOUND_SECONDS, fast, unique
from tests.integration.scrape import Sample, metered, scrape_until, value
from webhooks.config import Settings
from webhooks.core import metrics
from webhooks.core.models import DeliveryResult, DeliveryState
from webhooks.dev.receiver import Behavior, ReceivedRequest, Receiver, Respond
from worker import running_worker

TEMPORAL_LABELS = {
    "namespace",
    "task_queue",
    "workflow_type",
    "activity_type",
    "service_name",
    "le",
}


class Scripts:
    """Per path: /ok always 200; /flaky 500, 500, then 200; /down always 500."""

    def __init__(self) -> None:
        self.flaky = 0

    def __call__(self, request: ReceivedRequest) -> Behavior:
        if request.path.endswith("/flaky"):
            self.flaky += 1
            return Respond(500 if self.flaky <= 2 else 200)
        return Respond(500 if request.path.endswith("/down") else 200)


def settled(samples: list[Sample]) -> bool:
    return (
        value(samples, "webhooks_deliveries_finished_total") == 3
        and value(samples, "webhooks_dead_letters_opened") == 1
        and value(samples, metrics.REGISTRY_CACHE.name) == 6
    )


async def test_a_known_scenario_is_counted_exactly(
    client: Client, settings: Settings, publisher: EndpointPublisher
) -> None:
    metered_client, metered_settings = await metered(client, settings)
    # A cache TTL longer than the test: each endpoint is read from the registry once.
    metered_settings = metered_settings.model_copy(update={"registry_cache_seconds": 60})
    endpoints = {path: unique(f"ep_{path}") for path in ("ok", "flaky", "down")}
    schedules = {"ok": fast(0), "flaky": fast(0, 0.1, 0.1), "down": fast(0, 0.1)}
    async with running_worker(metered_client, metered_settings), Receiver(Scripts()) as rx:
        metered_publisher = publisher.on(metered_client, metered_settings.task_queue)
        ids = {
            path: await metered_publisher.publish(
                endpoint_id=endpoint,
                url=f"{rx.url}/{path}",
                event_type="test.metrics",
                data={"secret_marker": "do-not-export"},
                retry=schedules[path],
            )
            for path, endpoint in endpoints.items()
        }
        results = {
            path: await asyncio.wait_for(
                metered_client.get_workflow_handle(i, result_type=DeliveryResult).result(),
                BOUND_SECONDS,
            )
            for path, i in ids.items()
        }
        samples = await scrape_until(metered_settings, settled)
        url = rx.url
    assert [r.state for r in results.values()] == [
        DeliveryState.DELIVERED,
        DeliveryState.DELIVERED,
        DeliveryState.DEAD_LETTERED,
    ]
    assert len(rx.requests) == 6

    attempts = "webhooks_attempts_total"
    ok = {"outcome": "delivered", "error_kind": "none", "status_class": "2xx"}
    failed = {"outcome": "retryable", "error_kind": "http_status", "status_class": "5xx"}
    assert value(samples, attempts, **ok) == 2
    assert value(samples, attempts, **failed) == 4
    assert value(samples, attempts) == 6
    assert value(samples, "webhooks_attempt_duration_seconds_count") == 6
    assert value(samples, "webhooks_attempt_duration_seconds_count", outcome="delivered") == 2
    assert value(samples, "webhooks_deliveries_finished_total", state="delivered") == 2
    assert value(samples, "webhooks_deliveries_finished_total", state="dead_lettered") == 1
    latency = "webhooks_delivery_latency_seconds_count"
    assert value(samples, latency, outcome="delivered") == 2
    assert value(samples, latency, outcome="dead_lettered") == 1
    assert value(samples, "webhooks_first_attempt_delay_seconds_count") == 3
    # Histogram buckets are seconds: every delivered first attempt here came within 60 s.
    bucket = "webhooks_first_attempt_delay_seconds_bucket"
    assert value(samples, bucket, le="60") == 3
    assert value(samples, "webhooks_dead_letters_opened", reason="exhausted") == 1
    # One registry lookup per attempt: the first per endpoint reads it, the rest hit.
    lookups = metrics.REGISTRY_CACHE.name
    assert value(samples, lookups, result="miss") == 3
    assert value(samples, lookups, result="hit") == 3
    assert {s.labels["activity_type"] for s in samples if s.name == lookups} == {"send_webhook"}
    assert {s.labels["kind"] for s in samples if s.name == lookups} == {"endpoint"}

    # No label of ours holds an id, a URL or customer data; only the catalogue's labels.
    ours = [s for s in samples if s.name.startswith("webhooks_")]
    catalogue = {label for m in metrics.ALL for label in m.labels}
    forbidden = [*endpoints.values(), *ids.values(), url, "127.0.0.1", "do-not-export"]
    for sample in ours:
        assert set(sample.labels) <= catalogue | TEMPORAL_LABELS, sample
        for label_value in sample.labels.values():
            assert not any(f in label_value for f in forbidden), sample
