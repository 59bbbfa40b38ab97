"""Publishing: turn an event into a `WebhookDelivery` workflow, validated at the edge.

    publisher = WebhookPublisher(await connect(Settings()))
    delivery_id = await publisher.publish(endpoint_id="ep_1", url="https://...",
                                          event_type="stream.settled", data={...},
                                          event_id="evt_42")

The body is serialized here, once; every attempt sends and signs exactly these bytes.
Publishing the same event id to the same endpoint again returns the same delivery id and
starts nothing, while the first delivery runs and for the namespace's retention after.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.trace import SpanKind
from pydantic import BaseModel
from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from webhooks.codec import codec_from_settings
from webhooks.config import Settings
from webhooks.core import metrics
from webhooks.core import search_attributes as sa
from webhooks.core.events import validate_event_data
from webhooks.core.ids import delivery_id as make_delivery_id
from webhooks.core.models import DeliveryOptions, DeliveryRequest, DeliveryState, RetrySchedule
from webhooks.core.names import DEFAULT_TASK_QUEUE, DELIVERY_WORKFLOW
from webhooks.core.summaries import static_details
from webhooks.secrets import FileSecretStore
from webhooks.tracing import client_interceptors, tracer_of


def data_converter(settings: Settings) -> DataConverter:
    """Pydantic JSON, encrypted with the history codec when keys are configured (then
    failure messages are moved into the encrypted payloads too)."""
    codec = codec_from_settings(settings)
    if codec is None:
        return pydantic_data_converter
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


async def connect(settings: Settings) -> Client:
    """A client with the data converter every worker and publisher must share, traced
    when the OTEL_* variables turn tracing on (`webhooks.tracing`)."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
        runtime=metrics_runtime(settings.metrics_bind_address),
        interceptors=client_interceptors(),
    )


@functools.cache
def metrics_runtime(bind_address: str | None) -> Runtime | None:
    """One runtime per process serving Prometheus metrics (SDK and product metrics); the
    product's histograms get buckets in seconds (the runtime's defaults are milliseconds)."""
    if not bind_address:
        return None
    prometheus = PrometheusConfig(
        bind_address=bind_address, histogram_bucket_overrides=metrics.BUCKETS
    )
    return Runtime(telemetry=TelemetryConfig(metrics=prometheus))


def event_body(event_id: str, event_type: str, timestamp: datetime, data: Any) -> str:
    """The Standard Webhooks payload (`type`, `timestamp`, `data`) plus the event id."""
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    if not isinstance(data, dict):
        raise ValueError("data must be a JSON object")
    payload = {
        "id": event_id,
        "type": event_type,
        "timestamp": timestamp.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "data": data,
    }
    try:
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"data is not JSON-serializable: {err}") from None


def build_request(
    *,
    endpoint_id: str,
    url: str,
    event_type: str,
    data: Any,
    event_id: str | None = None,
    secret_ref: str = "default",
    retry: RetrySchedule | None = None,
    dead_letter_on_4xx: bool = False,
    timestamp: datetime | None = None,
    secrets: FileSecretStore | None = None,
    require_https: bool = False,
) -> DeliveryRequest:
    """Validate everything and build the workflow input; raises ValueError on bad input.

    `data` of a registered event type (`webhooks.core.events`) must match its model."""
    if secrets is not None:
        secrets.keys(secret_ref)  # raises if unknown, or if every secret of it has expired
    data = validate_event_data(event_type, data)
    event_id = event_id or f"evt_{uuid.uuid4().hex}"
    now = datetime.now(UTC)
    request = DeliveryRequest(
        delivery_id=make_delivery_id(endpoint_id, event_id),
        endpoint_id=endpoint_id,
        url=url,
        event_id=event_id,
        event_type=event_type,
        body=event_body(event_id, event_type, timestamp or now, data),
        secret_ref=secret_ref,
        published_at=now,
        options=DeliveryOptions(
            retry=retry or RetrySchedule(), dead_letter_on_4xx=dead_letter_on_4xx
        ),
    )
    if require_https and urlsplit(request.url).scheme.lower() != "https":
        raise ValueError("url must use https (WEBHOOKS_REQUIRE_HTTPS is on)")
    return request


class WebhookPublisher:
    """Starts deliveries. Share one per process; it holds no per-call state."""

    def __init__(
        self,
        client: Client,
        *,
        task_queue: str = DEFAULT_TASK_QUEUE,
        secrets: FileSecretStore | None = None,
        require_https: bool = False,
    ) -> None:
        self._client = client
        self._task_queue = task_queue
        self._secrets = secrets
        self._require_https = require_https
        self._tracer = tracer_of(client)

    async def publish(self, **event: Any) -> str:
        """Validate, then start the delivery; returns its delivery id (the workflow id)."""
        request = build_request(secrets=self._secrets, require_https=self._require_https, **event)
        return await self.start(request)

    async def start(self, request: DeliveryRequest) -> str:
        """Start (or find) the delivery of an already-built request."""
        if self._tracer is None:
            return await self._start(request)
        # The root of the delivery's trace: the workflow and every attempt hang below it.
        with self._tracer.start_as_current_span(
            "webhooks.publish",
            kind=SpanKind.PRODUCER,
            attributes={
                "webhooks.delivery_id": request.delivery_id,
                "webhooks.endpoint_id": request.endpoint_id,
                "webhooks.event_id": request.event_id,
                "webhooks.event_type": request.event_type,
            },
        ):
            return await self._start(request)

    async def _start(self, request: DeliveryRequest) -> str:
        try:
            await self._client.start_workflow(
                DELIVERY_WORKFLOW,
                request,
                id=request.delivery_id,
                task_queue=self._task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(sa.ENDPOINT_ID, request.endpoint_id),
                        SearchAttributePair(sa.EVENT_TYPE, request.event_type),
                        SearchAttributePair(sa.STATUS, DeliveryState.PENDING.value),
                    ]
                ),
                static_summary=f"{request.event_type} -> {request.endpoint_id}",
                static_details=static_details(
                    endpoint_id=request.endpoint_id,
                    event_id=request.event_id,
                    event_type=request.event_type,
                    host=urlsplit(request.url).hostname,
                ),
                # Only takes effect when a worker shares this client: the first workflow
                # task then runs in-process without a round trip through the server.
                request_eager_start=True,
            )
        except WorkflowAlreadyStartedError:
            pass  # Closed earlier with this id: already delivered or dead-lettered.
        return request.delivery_id
