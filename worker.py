"""The worker: wires the workflows and the send activity to a task queue.

webhooks worker            # connects to TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, nullcontext
from datetime import timedelta
from typing import Any

import httpx
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from activities.bulk import BulkActivities
from activities.circuit_view import CircuitActivities, CircuitView
from activities.endpoint_cache import EndpointCache
from activities.operational import OperationalEvents, accounts_in
from activities.safe_transport import DestinationPolicy
from activities.send import SendActivities, new_http_client
from activities.tracing import AttemptSpans, instrument
from webhooks.config import Settings
from webhooks.core import search_attributes as sa
from webhooks.publisher import WebhookPublisher
from webhooks.registry.crypto import SecretKeyRing
from webhooks.registry.errors import SecretKeysError
from webhooks.registry.service import EndpointRegistry, open_registry
from webhooks.tracing import tracer_of
from workflows.bulk_dead_letters import BulkDeadLetterAction
from workflows.dead_letter import DeadLetter
from workflows.delivery import WebhookDelivery
from workflows.endpoint_circuit import EndpointCircuit

log = logging.getLogger("webhooks.worker")

SHUTDOWN_MARGIN_SECONDS = 5.0

WORKFLOWS = (WebhookDelivery, DeadLetter, EndpointCircuit)
"""The workflow types on the delivery task queue (`EndpointCircuit` for circuits started
there before the control queue: they move at their next continue-as-new)."""
CONTROL_WORKFLOWS = (EndpointCircuit, BulkDeadLetterAction)
"""The workflow types on the control task queue: circuits and operator jobs."""
ALL_WORKFLOWS = tuple(dict.fromkeys(WORKFLOWS + CONTROL_WORKFLOWS))
"""Every workflow type the worker runs (the replay test replays a history of each)."""


async def ensure_search_attributes(client: Client) -> None:
    """Register missing search attributes, or refuse to start.

    Without them every status upsert would fail its workflow task, and each retry of that
    task would send the webhook again: a duplicate storm instead of a clear error.
    """
    namespace = client.namespace
    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
    except RPCError as err:
        if err.status == RPCStatusCode.UNIMPLEMENTED:
            return  # The time-skipping test server; its tests register them directly.
        raise
    missing = {
        key.name: IndexedValueType.ValueType(key.indexed_value_type.value)
        for key in sa.ALL
        if key.name not in listed.custom_attributes
    }
    if not missing:
        return
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(search_attributes=missing, namespace=namespace)
        )
        log.info("registered search attributes %s", ", ".join(missing))
    except RPCError as err:
        # Workers starting together on a fresh namespace race to add them: the loser's
        # request fails, yet the attributes are there.
        again = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        if all(name in again.custom_attributes for name in missing):
            return
        raise RuntimeError(
            f"search attributes {', '.join(missing)} are not registered in namespace "
            f"{namespace!r} and could not be added ({err.message}); see docs/deploy.md"
        ) from None


@asynccontextmanager
async def running_worker(client: Client, settings: Settings) -> AsyncIterator[Worker]:
    """Run a worker (with its shared HTTP client, endpoint cache and circuit view) for the
    block's duration. Migrates an empty or older registry first; refuses a newer one, and
    refuses to start without the key ring that opens endpoint secrets."""
    await ensure_search_attributes(client)
    if SecretKeyRing.from_settings(settings) is None:
        raise SecretKeysError(
            "the worker needs WEBHOOKS_SECRET_KEYS (or _FILE) to open endpoint secrets; "
            "see docs/security.md"
        )
    async with (
        open_registry(settings, migrate=True) as registry,
        new_http_client(
            connect_timeout=settings.connect_timeout_seconds,
            max_connections=settings.max_connections,
            destinations=DestinationPolicy.from_settings(settings),
        ) as http,
    ):
        endpoints = EndpointCache(
            registry, ttl=settings.registry_cache_seconds, stale=settings.registry_stale_seconds
        )
        async with (
            (
                CircuitView(
                    client,
                    task_queue=settings.control_queue,
                    config=settings.circuit,
                    endpoints=endpoints,
                    registry=registry,
                )
                if settings.circuit_enabled
                else nullcontext()
            ) as view,
            _workers(client, settings, http, endpoints, registry, view) as worker,
        ):
            yield worker


@asynccontextmanager
async def _workers(
    client: Client,
    settings: Settings,
    http: httpx.AsyncClient,
    endpoints: EndpointCache,
    registry: EndpointRegistry,
    view: CircuitView | None,
) -> AsyncIterator[Worker]:
    """The delivery worker and the control worker (circuits and operator jobs, on their own
    queue so that a backlog of deliveries never delays them)."""
    tracer = tracer_of(client)
    if tracer is not None:
        instrument(http, send_traceparent=settings.send_traceparent)
    circuits = CircuitActivities(client, registry)
    circuit_activities: list[Callable[..., Any]] = [
        circuits.load_circuit,
        circuits.publish_circuit,
        circuits.nudge_probe,
        circuits.wake_deliveries,
    ]
    events = operational_events(client, settings, registry)
    sender = SendActivities(
        http,
        endpoints,
        timeout_seconds=settings.http_timeout_seconds,
        excerpt_bytes=settings.response_excerpt_bytes,
        circuit=view,
    )
    worker = Worker(
        client,
        task_queue=settings.task_queue,
        workflows=list(WORKFLOWS),
        activities=[
            sender.send_webhook,
            *circuit_activities,
            events.publish_operational_event,
        ],
        # Temporal's TracingInterceptor comes from the client; this adds the attempt span.
        interceptors=[AttemptSpans(tracer)] if tracer is not None else [],
        # On shutdown (a rolling deploy's SIGTERM) in-flight sends get their whole HTTP
        # timeout to finish instead of being cancelled and sent again by another worker.
        graceful_shutdown_timeout=graceful_shutdown_timeout(settings),
        max_concurrent_workflow_tasks=settings.max_concurrent_sends,
        max_concurrent_local_activities=settings.max_concurrent_sends,
    )
    bulk = BulkActivities(client)
    control = Worker(
        client,
        task_queue=settings.control_queue,
        workflows=list(CONTROL_WORKFLOWS),
        activities=[
            bulk.count_dead_letters,
            bulk.signal_dead_letters,
            *circuit_activities,
            events.publish_operational_event,
        ],
        # A wake or a bulk job stops at its next signal and heartbeats its cursor.
        graceful_shutdown_timeout=graceful_shutdown_timeout(settings),
    )
    async with worker, control:
        log.info(
            "worker polling task queues %r and %r", settings.task_queue, settings.control_queue
        )
        yield worker


def graceful_shutdown_timeout(settings: Settings) -> timedelta:
    """How long a stopping worker lets in-flight sends run: one whole attempt, plus a
    moment to report its result."""
    return timedelta(seconds=settings.http_timeout_seconds + SHUTDOWN_MARGIN_SECONDS)


def operational_events(
    client: Client, settings: Settings, registry: EndpointRegistry
) -> OperationalEvents:
    """The operational-event activity: publishes to the operations account's registry
    endpoints like any event (one signed, retried `WebhookDelivery` each, on the delivery
    queue). Without an operations account it publishes nothing (it is registered all the
    same: dead letters and circuits always call it)."""
    publisher = WebhookPublisher(client, registry=registry, task_queue=settings.task_queue)
    return OperationalEvents(
        operations_account=settings.operations_account_id,
        publish=publisher.publish_event,
        account_of=accounts_in(registry),
        expiry_warning_seconds=settings.dead_letter_expiry_warning_seconds,
    )


async def run_worker(client: Client, settings: Settings, stop: asyncio.Event) -> None:
    """Serve until `stop` is set, then shut down gracefully."""
    async with running_worker(client, settings):
        await stop.wait()
