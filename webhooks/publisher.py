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
namespace's retention after) and says so: `Published.outcome` is `already_exists` with the
delivery's state (running, delivered, dead-lettered). A delivery that failed, was
terminated or timed out is started afresh (`ALLOW_DUPLICATE_FAILED_ONLY`). The same event
id with other content (type or data) is refused with `PublishConflictError`: the existing
delivery's input is read and compared by digest (`webhooks.core.ids.content_digest`) only
on that path, so the success path costs nothing extra.

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
import logging
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.trace import SpanKind
from pydantic import BaseModel, ConfigDict, computed_field
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)

from webhooks.codec import codec_from_settings
from webhooks.config import Settings
from webhooks.core import metrics
from webhooks.core import search_attributes as sa
from webhooks.core.events import validate_event_data
from webhooks.core.ids import content_digest
from webhooks.core.ids import delivery_id as make_delivery_id
from webhooks.core.models import (
    DeliveryOptions,
    DeliveryRequest,
    DeliveryState,
    RetrySchedule,
    resolve_defaults,
)
from webhooks.core.names import DEFAULT_TASK_QUEUE, DELIVERY_WORKFLOW
from webhooks.core.policy import input_problems
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
        runtime=runtime(settings.metrics_bind_address),
        interceptors=client_interceptors(),
    )


@functools.cache
def runtime(bind_address: str | None) -> Runtime:
    """One runtime per process. The SDK core's own log lines (say, "workflow task duration
    exceeded 5 seconds" under load) go to Python logging, hence to stderr like every other
    log line: written straight to stdout, a worker whose stdout nobody reads blocked its
    workflow thread on the full pipe and stopped. With `bind_address`, it serves Prometheus
    metrics (SDK and product); the product's histograms get buckets in seconds (the
    runtime's defaults are milliseconds)."""
    prometheus = (
        PrometheusConfig(bind_address=bind_address, histogram_bucket_overrides=metrics.BUCKETS)
        if bind_address
        else None
    )
    logs = LoggingConfig(
        filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
        forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
    )
    return Runtime(telemetry=TelemetryConfig(logging=logs, metrics=prometheus))


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
    request = DeliveryRequest(
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
    return checked(request)


def checked(request: DeliveryRequest) -> DeliveryRequest:
    """The request with every default resolved (written explicitly, so no worker's
    defaults decide it later), or ValueError if it is beyond the bounds that keep a
    delivery inside Temporal's limits (`webhooks.core.policy.input_problems`)."""
    problems = input_problems(request)
    if problems:
        raise ValueError("delivery refused: " + "; ".join(problems))
    return resolve_defaults(request, lambda _: True)


class PublishOutcome(StrEnum):
    STARTED = "started"
    """A new delivery (the first, or again after a failed, terminated or timed-out one)."""
    ALREADY_EXISTS = "already_exists"
    """The same event was published to this endpoint before: nothing new started."""


class ExistingState(StrEnum):
    """Where an already existing delivery is."""

    RUNNING = "running"
    DELIVERED = "delivered"
    DEAD_LETTERED = "dead_lettered"


class Published(BaseModel):
    """What a publish call did for one endpoint. Serialized as-is by the HTTP API and the
    CLI's `--json`, so the field names are part of the contract."""

    model_config = ConfigDict(frozen=True)

    delivery_id: str
    endpoint_id: str
    outcome: PublishOutcome
    state: ExistingState | None = None
    """With `already_exists`: the existing delivery's state. None when started."""

    # pydantic's documented form; mypy refuses any decorator stacked on a property.
    @computed_field  # type: ignore[prop-decorator]
    @property
    def created(self) -> bool:
        """True when this call started the delivery."""
        return self.outcome is PublishOutcome.STARTED


class PublishConflictError(ValueError):
    """The event id was already published to the endpoint with other content (type or
    data): republishing must repeat the same event, never change it."""

    def __init__(self, conflicts: list[str]) -> None:
        self.delivery_ids = conflicts
        super().__init__(
            "event id already published with different content to "
            + ", ".join(conflicts)
            + "; publish the changed event under a new event id"
        )


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
        or (with `account_id`) another account's; ValueError if the options are beyond the
        bounds (`checked`); PublishConflictError if the event id was published to this
        endpoint with other content."""
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
        """`publish`, saying what happened: started, or already exists (with its state)."""
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
        started = await self._start(request, host=urlsplit(endpoint.url).hostname)
        _refuse_conflicts([started])
        return started.published

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
        """`publish_event`, saying what happened per endpoint. Every start is tried before
        a PublishConflictError (naming the conflicting deliveries) is raised."""
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

        async def start(request: DeliveryRequest, endpoint: Endpoint) -> _Started:
            async with limit:
                return await self._start(request, host=urlsplit(endpoint.url).hostname)

        # Every start is tried (a retry of the call finds them) before a conflict is raised.
        published = list(await asyncio.gather(*map(start, requests, endpoints)))
        _refuse_conflicts(published)
        return [p.published for p in published]

    async def start(self, request: DeliveryRequest) -> str:
        """Start (or find) the delivery of an already-built request; ValueError if it is
        beyond the bounds (`checked`)."""
        started = await self._start(checked(request))
        _refuse_conflicts([started])
        return request.delivery_id

    async def _start(self, request: DeliveryRequest, *, host: str | None = None) -> _Started:
        """Start the delivery, or describe the one that has its id (within retention).
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

    async def _start_workflow(self, request: DeliveryRequest, host: str | None) -> _Started:
        try:
            await self._client.start_workflow(
                DELIVERY_WORKFLOW,
                request,
                id=request.delivery_id,
                task_queue=self._task_queue,
                # A delivery that failed, was terminated or timed out may be published
                # again; one that ran to its end (delivered or dead-lettered) is kept.
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
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
            # Running, delivered or dead-lettered under this id already.
            return await self._existing(request)
        return _Started(_published(request, PublishOutcome.STARTED))

    async def _existing(self, request: DeliveryRequest) -> _Started:
        """Describe the delivery that holds the id, and whether it carries the same event."""
        handle: WorkflowHandle[Any, Any] = self._client.get_workflow_handle(request.delivery_id)
        described = await handle.describe()
        if described.status is WorkflowExecutionStatus.RUNNING:
            state = ExistingState.RUNNING
        elif described.typed_search_attributes.get(sa.STATUS) == ExistingState.DELIVERED.value:
            state = ExistingState.DELIVERED
        else:
            state = ExistingState.DEAD_LETTERED
        stored = await _stored_request(handle, self._client.data_converter)
        same = stored is None or content_digest(stored.body) == content_digest(request.body)
        return _Started(_published(request, PublishOutcome.ALREADY_EXISTS, state), same)

    def _need_registry(self) -> EndpointRegistry:
        if self._registry is None:
            raise RegistryError(
                "publishing needs the endpoint registry: WebhookPublisher(client, "
                "registry=...) (see webhooks.registry.service.open_registry)"
            )
        return self._registry


@dataclasses.dataclass(frozen=True)
class _Started:
    published: Published
    same_content: bool = True


def _published(
    request: DeliveryRequest, outcome: PublishOutcome, state: ExistingState | None = None
) -> Published:
    return Published(
        delivery_id=request.delivery_id,
        endpoint_id=request.endpoint_id,
        outcome=outcome,
        state=state,
    )


def _refuse_conflicts(started: list[_Started]) -> None:
    conflicts = [s.published.delivery_id for s in started if not s.same_content]
    if conflicts:
        raise PublishConflictError(conflicts)


async def _stored_request(
    handle: WorkflowHandle[Any, Any], converter: DataConverter
) -> DeliveryRequest | None:
    """The input the delivery's latest run was started with; None if it cannot be read
    as a request (a malformed input, dead-lettered as `invalid_input`)."""
    async for event in handle.fetch_history_events(page_size=1):
        payloads = event.workflow_execution_started_event_attributes.input.payloads
        try:
            (stored,) = await converter.decode(payloads[:1], [DeliveryRequest])
        except (ValueError, TypeError):
            return None
        return stored if isinstance(stored, DeliveryRequest) else None
    return None
