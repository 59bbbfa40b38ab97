"""OpenTelemetry: one trace runs from `publish` through the workflow to every HTTP attempt.

Spans go to an in-memory exporter through a client carrying Temporal's `TracingInterceptor`,
the way `connect()` builds one when the OTEL_* variables turn tracing on.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor

from tests.conftest import BIN, EndpointPublisher
from tests.integration import BOUND_SECONDS, registry_env, unique
from webhooks.config import Settings
from webhooks.core.models import DeliveryResult, DeliveryState, RetrySchedule
from webhooks.dev.receiver import Receiver, Respond, scripted
from webhooks.tracing import tracer_of
from worker import running_worker


@pytest.fixture
def exporter() -> Iterator[tuple[InMemorySpanExporter, TracerProvider]]:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    yield spans, provider
    provider.shutdown()


def traced_client(client: Client, provider: TracerProvider) -> Client:
    config = client.config()
    config["interceptors"] = [TracingInterceptor(provider.get_tracer("test"))]
    return Client(**config)


async def deliver_through_failures(
    client: Client, settings: Settings, rx: Receiver, endpoints: EndpointPublisher
) -> DeliveryResult:
    async with running_worker(client, settings):
        publisher = endpoints.on(client, settings.task_queue)
        delivery_id = await publisher.publish(
            endpoint_id="ep_traced",
            url=rx.url,
            event_type="test.traced",
            data={"n": 1},
            retry=RetrySchedule(schedule_seconds=[0, 0.1, 0.1], jitter=0),
        )
        handle = client.get_workflow_handle(delivery_id, result_type=DeliveryResult)
        result: DeliveryResult = await handle.result()
        return result


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def ancestors(span: ReadableSpan, spans: tuple[ReadableSpan, ...]) -> list[str]:
    """The names of the span's ancestors, nearest first."""
    index = {s.context.span_id: s for s in spans if s.context is not None}
    names, parent = [], span.parent
    while parent is not None and parent.span_id in index:
        span = index[parent.span_id]
        names.append(span.name)
        parent = span.parent
    return names


async def test_one_trace_from_publish_to_every_attempt(
    client: Client,
    settings: Settings,
    exporter: tuple[InMemorySpanExporter, TracerProvider],
    publisher: EndpointPublisher,
) -> None:
    spans_out, provider = exporter
    traced = traced_client(client, provider)
    assert tracer_of(traced) is not None
    assert tracer_of(client) is None
    async with Receiver(scripted(Respond(500), Respond(500), Respond(200))) as rx:
        result = await deliver_through_failures(traced, settings, rx, publisher)
    assert result.state is DeliveryState.DELIVERED
    assert result.attempts == 3

    spans = spans_out.get_finished_spans()
    (publish,) = by_name(spans, "webhooks.publish")
    assert publish.kind is SpanKind.PRODUCER
    assert publish.attributes is not None
    assert publish.attributes["webhooks.delivery_id"] == result.delivery_id
    assert publish.attributes["webhooks.event_type"] == "test.traced"
    assert publish.context is not None
    trace_id = publish.context.trace_id

    attempts = sorted(by_name(spans, "webhooks.attempt"), key=lambda s: s.start_time or 0)
    assert len(attempts) == 3
    codes = [a.attributes["http.response.status_code"] for a in attempts if a.attributes]
    assert codes == [500, 500, 200]
    assert [a.status.status_code for a in attempts] == [
        StatusCode.ERROR,
        StatusCode.ERROR,
        StatusCode.UNSET,
    ]
    for attempt in attempts:
        assert attempt.context is not None
        assert attempt.context.trace_id == trace_id
        assert attempt.kind is SpanKind.CLIENT
        assert attempt.attributes is not None
        assert attempt.attributes["server.address"] == "127.0.0.1"
        assert attempt.attributes["webhooks.delivery_id"] == result.delivery_id
        chain = ancestors(attempt, spans)
        # attempt <- RunActivity <- StartActivity <- (workflow) ... <- publish
        assert chain[0] == "RunActivity:send_webhook"
        assert "StartActivity:send_webhook" in chain
        assert chain[-1] == "webhooks.publish"
        assert any(name.endswith("Workflow:WebhookDelivery") for name in chain)
    assert {s.context.trace_id for s in by_name(spans, "RunWorkflow:WebhookDelivery") if s.context}
    assert {s.context.trace_id for s in spans if s.context} == {trace_id}
    # Off by default: customers get no trace context.
    assert all("traceparent" not in r.headers for r in rx.requests)
    # Spans never carry the body.
    assert not any('"n": 1' in str(s.attributes) or '"n":1' in str(s.attributes) for s in spans)


async def test_traceparent_is_sent_when_asked(
    client: Client,
    settings: Settings,
    exporter: tuple[InMemorySpanExporter, TracerProvider],
    publisher: EndpointPublisher,
) -> None:
    spans_out, provider = exporter
    traced = traced_client(client, provider)
    with_header = settings.model_copy(update={"send_traceparent": True})
    async with Receiver(scripted(Respond(503))) as rx:
        result = await deliver_through_failures(traced, with_header, rx, publisher)
    assert result.attempts == 2
    attempts = sorted(
        by_name(spans_out.get_finished_spans(), "webhooks.attempt"),
        key=lambda s: s.start_time or 0,
    )
    sent = [r.headers["traceparent"] for r in rx.requests]
    # traceparent: 00-<trace id>-<parent span id>-<flags>: the attempt's own span.
    expected = [
        f"00-{c.trace_id:032x}-{c.span_id:016x}-{int(c.trace_flags):02x}"
        for c in (a.context for a in attempts)
        if c is not None
    ]
    assert sent == expected


def console_spans(text: str) -> list[dict[str, Any]]:
    """The spans OpenTelemetry's console exporter printed (pretty JSON objects) among
    other output."""
    decoder = json.JSONDecoder()
    spans, index = [], 0
    while (index := text.find("{\n", index)) != -1:
        value, end = decoder.raw_decode(text, index)
        if isinstance(value, dict) and "context" in value:
            spans.append(value)
        index = end
    return spans


async def test_the_otel_variables_turn_tracing_on(
    client: Client, settings: Settings, publisher: EndpointPublisher
) -> None:
    """`webhooks publish` and `webhooks worker`, each traced by OTEL_TRACES_EXPORTER alone:
    the publisher's span and the worker's spans share one trace id."""
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "WEBHOOKS_TASK_QUEUE": settings.task_queue,
        **registry_env(settings),
        "WEBHOOKS_CIRCUIT_ENABLED": "false",
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_SERVICE_NAME": "webhooks-test",
        "WEBHOOKS_LOG_FORMAT": "json",
    }
    worker = await asyncio.create_subprocess_exec(
        str(BIN / "webhooks"), "worker", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        async with Receiver(scripted(Respond(500))) as rx:
            endpoint = await publisher.endpoint(unique("ep_otel"), rx.url)
            publish = await asyncio.create_subprocess_exec(
                str(BIN / "webhooks"), "publish", "--endpoint-id", endpoint,
                "--event-type", "test.otel", "--data", "{}",
                "--schedule", "0,100ms", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )  # fmt: skip
            published, errors = await asyncio.wait_for(publish.communicate(), BOUND_SECONDS)
            assert publish.returncode == 0, errors.decode()
            delivery_id = published.decode().split()[0]
            handle = client.get_workflow_handle(delivery_id, result_type=DeliveryResult)
            result = await asyncio.wait_for(handle.result(), BOUND_SECONDS)
            assert result.attempts == 2
    finally:
        worker.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(worker.communicate(), BOUND_SECONDS)
    assert worker.returncode == 0, err.decode()
    (publish_span,) = [
        s for s in console_spans(published.decode()) if s["name"] == "webhooks.publish"
    ]
    assert publish_span["resource"]["attributes"]["service.name"] == "webhooks-test"
    trace_id = publish_span["context"]["trace_id"]
    worker_spans = console_spans(out.decode())
    attempts = [s for s in worker_spans if s["name"] == "webhooks.attempt"]
    assert len(attempts) == 2
    assert {s["context"]["trace_id"] for s in attempts} == {trace_id}
    assert any(s["name"] == "RunWorkflow:WebhookDelivery" for s in worker_spans)
    # Spans on stdout, logs on stderr: one JSON object per line.
    logs = [json.loads(line) for line in err.decode().splitlines() if line.strip()]
    assert any(entry["message"].startswith("worker polling") for entry in logs)
