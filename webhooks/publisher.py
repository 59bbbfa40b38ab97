"""Publishing: turn an event into `WebhookDelivery` workflows, validated at the edge.

    settings = Settings()
    async with open_registry(settings, keys=False) as registry:
        publisher = WebhookPublisher(await connect(settings), registry=registry)
        delivery_id = await publisher.publish(endpoint_id="ep_...", event_type="stream.settled",
                                              data={...}, event_id="evt_42")
        delivery_ids = await publisher.publish_event(account_id="acct_1", event_type=...,
                                                     data={...}, event_id="evt_43")

Publishers name an endpoint (or an account), never a URL or a secret: the worker resolves
both from the registry at every attempt. The publisher reads the registry (no key ring:
it cannot open secrets) to refuse unknown, disabled and other-account endpoints before
anything starts, and to find an account's subscribed endpoints.

The body is serialized here, once; every attempt sends and signs exactly these bytes.
The delivery id is derived from endpoint id and event id, so publishing the same event id
to the same endpoint again starts nothing (while the first delivery runs and for the
namespace's retention after) and says so (`Published.created` is False).

Fan-out (`publish_event`) happens here, not in a workflow, and its contract is *retry until
it returns*: a publisher that crashes halfway calls it again with the same event id; the
deliveries already started are found, the missing ones start. One durable fan-out
workflow per event would make that automatic but costs a second workflow per event (see
docs/benchmarks.md for the measured cost and why this was chosen).
"""

from __future__ import annotations

import asyncio
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
from webhooks.registry.errors import RegistryError
from webhooks.registry.models import Endpoint
from webhooks.registry.service import EndpointRegistry
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
    endpoint: Endpoint,
    event_type: str,
    data: Any,
    event_id: str | None = None,
    retry: RetrySchedule | None = None,
    dead_letter_on_4xx: bool = False,
    timestamp: datetime | None = None,
) -> DeliveryRequest:
    """Validate everything and build the workflow input for one endpoint; raises ValueError
    on bad input. `data` of a registered event type (`webhooks.core.events`) must match its
    model; `retry` defaults to the endpoint's own schedule, then the standard one."""
    data = validate_event_data(event_type, data)
    event_id = event_id or f"evt_{uuid.uuid4().hex}"
    now = datetime.now(UTC)
    return DeliveryRequest(
        delivery_id=make_delivery_id(endpoint.id, event_id),
        endpoint_id=endpoint.id,
        account_id=endpoint.account_id,
        event_id=event_id,
        event_type=event_type,
        body=event_body(event_id, event_type, timestamp or now, data),
        published_at=now,
        options=DeliveryOptions(
            retry=retry or endpoint.settings.retry or RetrySchedule(),
            dead_letter_on_4xx=dead_letter_on_4xx,
        ),
    )


@dataclasses.dataclass(frozen=True)
class Published:
    """One delivery a publish call asked for."""

    delivery_id: str
    endpoint_id: str
    created: bool
    """False when it already existed (the same event id was published to it before)."""


FAN_OUT_CONCURRENCY = 16
"""Deliveries of one event started at once."""


class WebhookPublisher:
    """Starts deliveries. Share one per process; it holds no per-call state."""

    def __init__(
        self,
        client: Client,
        *,
        registry: EndpointRegistry | None = None,
        task_queue: str = DEFAULT_TASK_QUEUE,
    ) -> None:
        self._client = client
        self._registry = registry
        self._task_queue = task_queue
        self._tracer = tracer_of(client)

    async def publish(
        self,
        *,
        endpoint_id: str,
        event_type: str,
        data: Any,
        event_id: str | None = None,
        retry: RetrySchedule | None = None,
        dead_letter_on_4xx: bool = False,
        account_id: str | None = None,
        timestamp: datetime | None = None,
    ) -> str:
        """Deliver one event to one endpoint; returns the delivery id (the workflow id).
        `timestamp` is when the event happened (the payload's `timestamp`; default now).

        Raises a RegistryError, and starts nothing, if the endpoint is unknown, disabled,
        or (with `account_id`) another account's."""
        published = await self.publish_detailed(
            endpoint_id=endpoint_id,
            event_type=event_type,
            data=data,
            event_id=event_id,
            retry=retry,
            dead_letter_on_4xx=dead_letter_on_4xx,
            account_id=account_id,
            timestamp=timestamp,
        )
        return published.delivery_id

    async def publish_detailed(
        self,
        *,
        endpoint_id: str,
        event_type: str,
        data: Any,
        event_id: str | None = None,
        retry: RetrySchedule | None = None,
        dead_letter_on_4xx: bool = False,
        account_id: str | None = None,
        timestamp: datetime | None = None,
    ) -> Published:
        """`publish`, also saying whether the delivery is new."""
        endpoint = await self._need_registry().deliverable(endpoint_id, account_id=account_id)
        if not endpoint.wants(event_type):
            raise RegistryError(
                f"endpoint {endpoint_id!r} does not subscribe to {event_type!r} "
                f"(it takes {', '.join(endpoint.event_types or [])})"
            )
        request = build_request(
            endpoint=endpoint,
            event_type=event_type,
            data=data,
            event_id=event_id,
            retry=retry,
            dead_letter_on_4xx=dead_letter_on_4xx,
            timestamp=timestamp,
        )
        created = await self._start(request, host=urlsplit(endpoint.url).hostname)
        return Published(request.delivery_id, endpoint.id, created)

    async def publish_event(
        self,
        *,
        account_id: str,
        event_type: str,
        data: Any,
        event_id: str,
        retry: RetrySchedule | None = None,
        dead_letter_on_4xx: bool = False,
        timestamp: datetime | None = None,
    ) -> list[str]:
        """Deliver one event to every enabled endpoint of the account whose filter takes
        it; returns the delivery ids (one per endpoint, none if nobody subscribes).

        Retry it until it returns: with the same `event_id`, deliveries already started
        are found, not doubled. So the event id is required here."""
        return [
            p.delivery_id
            for p in await self.publish_event_detailed(
                account_id=account_id,
                event_type=event_type,
                data=data,
                event_id=event_id,
                retry=retry,
                dead_letter_on_4xx=dead_letter_on_4xx,
                timestamp=timestamp,
            )
        ]

    async def publish_event_detailed(
        self,
        *,
        account_id: str,
        event_type: str,
        data: Any,
        event_id: str,
        retry: RetrySchedule | None = None,
        dead_letter_on_4xx: bool = False,
        timestamp: datetime | None = None,
    ) -> list[Published]:
        """`publish_event`, also saying which deliveries are new."""
        endpoints = await self._need_registry().subscribers(account_id, event_type)
        timestamp = timestamp or datetime.now(UTC)  # one body for every endpoint
        requests = [
            build_request(
                endpoint=endpoint,
                event_type=event_type,
                data=data,
                event_id=event_id,
                retry=retry,
                dead_letter_on_4xx=dead_letter_on_4xx,
                timestamp=timestamp,
            )
            for endpoint in endpoints  # all validated before the first start
        ]
        limit = asyncio.Semaphore(FAN_OUT_CONCURRENCY)

        async def start(request: DeliveryRequest, endpoint: Endpoint) -> Published:
            async with limit:
                created = await self._start(request, host=urlsplit(endpoint.url).hostname)
            return Published(request.delivery_id, request.endpoint_id, created)

        return list(await asyncio.gather(*map(start, requests, endpoints)))

    async def start(self, request: DeliveryRequest) -> str:
        """Start (or find) the delivery of an already-built request."""
        await self._start(request)
        return request.delivery_id

    async def _start(self, request: DeliveryRequest, *, host: str | None = None) -> bool:
        """Start the delivery; False if one with its id runs or ran (within retention).
        `host` (of the endpoint's URL) is shown in the Temporal UI's static details."""
        if self._tracer is None:
            return await self._start_workflow(request, host)
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
            return await self._start_workflow(request, host)

    async def _start_workflow(self, request: DeliveryRequest, host: str | None) -> bool:
        try:
            await self._client.start_workflow(
                DELIVERY_WORKFLOW,
                request,
                id=request.delivery_id,
                task_queue=self._task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                search_attributes=TypedSearchAttributes(
                    [
                        *sa.identity(request),
                        SearchAttributePair(sa.STATUS, DeliveryState.PENDING.value),
                    ]
                ),
                static_summary=f"{request.event_type} -> {request.endpoint_id}",
                static_details=static_details(
                    endpoint_id=request.endpoint_id,
                    event_id=request.event_id,
                    event_type=request.event_type,
                    host=host or (urlsplit(request.url).hostname if request.url else None),
                ),
                # Only takes effect when a worker shares this client: the first workflow
                # task then runs in-process without a round trip through the server.
                request_eager_start=True,
            )
        except WorkflowAlreadyStartedError:
            return False  # Running, delivered or dead-lettered under this id already.
        return True

    def _need_registry(self) -> EndpointRegistry:
        if self._registry is None:
            raise RegistryError(
                "publishing needs the endpoint registry: WebhookPublisher(client, "
                "registry=...) (see webhooks.registry.service.open_registry)"
            )
        return self._registry
