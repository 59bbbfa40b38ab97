"""Record workflow histories for the replay test.

    .venv/bin/python -m tests.replay.record

Runs every path of every workflow type on a throwaway dev server with real HTTP receivers
(or only the groups named on the command line: plain, activity-error, bulk, edges,
circuit, disable-enable, continue-as-new) and writes each workflow's history to
`tests/replay/histories/<Type>-<scenario>.json`
(`SCENARIOS` in `test_replay.py` lists what must be there). Re-record deliberately, when a
workflow change is *meant* to be incompatible, and say so in the commit: old histories that
no longer replay are running workflows that a deploy would break. After adding a
`workflow.patched(...)` branch, move the current files into a dated subdirectory first
(`DEVELOPING.md`): the test replays those too.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sys
import sysconfig
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import update
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from tests.integration import settled
from webhooks.codec import generate_key
from webhooks.config import Settings
from webhooks.core import search_attributes as sa
from webhooks.core.bulk import BulkAction, BulkFilter, BulkProgress, BulkRequest
from webhooks.core.circuit import (
    CircuitConfig,
    CircuitInput,
    CircuitPhase,
    CircuitSnapshot,
    OperatorRequest,
    OutcomeReport,
)
from webhooks.core.ids import circuit_id, dead_letter_id, delivery_id
from webhooks.core.models import (
    DeadLetterReason,
    DeadLetterState,
    DeadLetterView,
    DeliveryResult,
    DeliveryState,
    DiscardRequest,
    RedeliverRequest,
    RetrySchedule,
)
from webhooks.core.names import CIRCUIT_WORKFLOW
from webhooks.dev.receiver import Hang, ReceivedRequest, Receiver, Respond, scripted
from webhooks.ops.bulk import start_bulk
from webhooks.publisher import WebhookPublisher, build_request
from webhooks.registry.errors import EndpointNotFoundError
from webhooks.registry.models import Endpoint, EndpointChanges, NewEndpoint
from webhooks.registry.schema import endpoints
from webhooks.registry.service import EndpointRegistry, open_registry
from worker import running_worker
from workflows.dead_letter import DeadLetter
from workflows.delivery import WebhookDelivery
from workflows.inputs import INVALID_INPUT_ERROR

HISTORIES = Path(__file__).parent / "histories"
BIN = Path(sysconfig.get_path("scripts"))
SCHEDULE = RetrySchedule(schedule_seconds=[0, 0.2, 0.2], jitter=0.2, throttled_min_seconds=0)
CIRCUIT = CircuitConfig(
    cooldown_seconds=1,
    max_cooldown_seconds=30,  # Held deliveries beyond the first wait this long: woken by signal.
    consecutive_failures=3,
    min_requests=3,
    window_seconds=5,
)
BOUND = 120.0

Delivery = WorkflowHandle[WebhookDelivery, DeliveryResult]
ONCE = RetrySchedule(schedule_seconds=[0], jitter=0, throttled_min_seconds=0)


async def _count(client: Client, query: str, expect: int) -> bool:
    return (await client.count_workflows(query)).count >= expect


async def save(name: str, handle: WorkflowHandle[Any, Any]) -> None:
    history = await handle.fetch_history()
    path = HISTORIES / f"{name}.json"
    recorded = {"workflowId": handle.id, **json.loads(history.to_json())}
    path.write_text(json.dumps(recorded, indent=1) + "\n")
    print(f"wrote {path.relative_to(Path.cwd())} ({len(history.events)} events)")


async def events(handle: WorkflowHandle[Any, Any]) -> list[HistoryEvent]:
    return [e async for e in handle.fetch_history_events()]


def signalled(history: Iterable[HistoryEvent], name: str) -> bool:
    return any(
        e.workflow_execution_signaled_event_attributes.signal_name == name
        for e in history
        if e.HasField("workflow_execution_signaled_event_attributes")
    )


def upserted(history: Iterable[HistoryEvent], status: str) -> bool:
    """Whether the workflow ever set `WebhookStatus` to `status`."""
    for e in history:
        if e.HasField("upsert_workflow_search_attributes_event_attributes"):
            fields = e.upsert_workflow_search_attributes_event_attributes.search_attributes
            payload = fields.indexed_fields.get(sa.STATUS.name)
            if payload is not None and json.loads(payload.data) == status:
                return True
    return False


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + BOUND
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not reached: {what}")
        await asyncio.sleep(0.2)


async def circuit_state(client: Client, endpoint_id: str) -> CircuitSnapshot | None:
    try:
        snapshot: CircuitSnapshot = await client.get_workflow_handle(circuit_id(endpoint_id)).query(
            "state", result_type=CircuitSnapshot
        )
    except RPCError as err:
        if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.RESOURCE_EXHAUSTED):
            return None
        raise
    return snapshot


async def _start_circuit(
    client: Client, settings: Settings, endpoint: str, config: CircuitConfig, task_queue: str
) -> WorkflowHandle[Any, Any]:
    """A circuit started by hand on `task_queue`, its home the control queue."""
    return await client.start_workflow(
        CIRCUIT_WORKFLOW,
        CircuitInput(
            endpoint_id=endpoint, config=config, control_task_queue=settings.control_queue
        ),
        id=circuit_id(endpoint),
        task_queue=task_queue,
    )


SLOW = RetrySchedule(schedule_seconds=[0, 3600], jitter=0, throttled_min_seconds=0)
REGISTRY_CACHE_SECONDS = 0.3


async def _retrying(handle: Delivery) -> bool:
    status = await handle.query(WebhookDelivery.status)
    return status.state is DeliveryState.RETRYING


class Recorder:
    def __init__(self, client: Client, settings: Settings, registry: EndpointRegistry) -> None:
        self.client = client
        self.registry = registry
        self.publisher = WebhookPublisher(client, registry=registry, task_queue=settings.task_queue)

    async def endpoint(self, url: str, endpoint_id: str | None = None) -> Endpoint:
        """The registry's endpoint at `url` (created, or moved there)."""
        endpoint_id = endpoint_id or f"ep_{uuid.uuid4().hex[:8]}"
        try:
            found = await self.registry.get(endpoint_id)
        except EndpointNotFoundError:
            new = NewEndpoint(id=endpoint_id, account_id="acct_replay", url=url)
            return (await self.registry.create(new)).endpoint
        if found.url == url:
            return found
        return await self.registry.update(endpoint_id, EndpointChanges(url=url))

    async def deliver(
        self, url: str, *, endpoint_id: str | None = None, retry: RetrySchedule = SCHEDULE
    ) -> Delivery:
        # One endpoint per scenario unless shared on purpose: a 410 disables its endpoint.
        endpoint = await self.endpoint(url, endpoint_id)
        delivery_id = await self.publisher.publish(
            endpoint_id=endpoint.id,
            event_type="stream.settled",
            data=settled(),
            event_id=f"evt_{uuid.uuid4().hex[:8]}",
            retry=retry,
        )
        return self.client.get_workflow_handle_for(WebhookDelivery.run, delivery_id)

    def letter(self, result: DeliveryResult) -> WorkflowHandle[DeadLetter, DeadLetterView]:
        assert result.dead_letter_id is not None
        return self.client.get_workflow_handle_for(DeadLetter.run, result.dead_letter_id)

    async def bulk(self, settings: Settings) -> None:
        """A bulk job over a filter: counts, signals one batch, finds nothing more."""
        endpoint = f"ep_{uuid.uuid4().hex[:8]}"
        async with Receiver(scripted(Respond(500), Respond(500), Respond(500))) as rx:
            for _ in range(3):
                failed = await self.deliver(rx.url, endpoint_id=endpoint, retry=ONCE)
                assert (await failed.result()).state is DeliveryState.DEAD_LETTERED
            where = BulkFilter(endpoint_id=endpoint)
            await until(
                lambda: _count(self.client, where.visibility(datetime.now(UTC)).query(), 3),
                "three dead letters listed",
            )
            job_id = await start_bulk(
                self.client,
                settings,
                BulkRequest(action=BulkAction.REDELIVER, filter=where, per_second=0.1),
            )
            job = self.client.get_workflow_handle(job_id, result_type=BulkProgress)
            assert (await job.result()).signalled == 3
        await save("BulkDeadLetterAction-redelivered", job)

    # -- WebhookDelivery and DeadLetter, no circuit involved -------------------------------

    async def plain(self) -> None:
        client = self.client
        # Delivered on the third attempt, after a 500 and a timeout.
        async with Receiver(scripted(Respond(500), Hang(2))) as rx:
            delivered = await self.deliver(rx.url)
            assert (await delivered.result()).state is DeliveryState.DELIVERED
        await save("WebhookDelivery-delivered", delivered)

        # Exhausted, then redelivered from the dead-letter queue, then delivered.
        async with Receiver(scripted(Respond(503), Respond(503), Respond(503))) as rx:
            failed = await self.deliver(rx.url)
            result = await failed.result()
            assert result.dead_letter_reason is DeadLetterReason.EXHAUSTED
            await save("WebhookDelivery-dead-lettered", failed)
            letter = self.letter(result)
            await letter.signal(DeadLetter.redeliver, RedeliverRequest(requested_by="record"))
            view = await letter.result()
            await save("DeadLetter-redelivered", letter)
            assert view.redelivery_run_id is not None
            rerun = client.get_workflow_handle_for(
                WebhookDelivery.run, failed.id, run_id=view.redelivery_run_id
            )
            assert (await rerun.result()).state is DeliveryState.DELIVERED
            await save("WebhookDelivery-redelivered", rerun)

        # The registry: disabled, then deleted, while the delivery waits to retry.
        for reason, change in (
            (DeadLetterReason.ENDPOINT_DISABLED, "disabled"),
            (DeadLetterReason.ENDPOINT_DELETED, "deleted"),
        ):
            async with Receiver(scripted(Respond(503))) as rx:
                waiting = await self.deliver(rx.url, retry=SLOW)
                endpoint_id = (await waiting.query(WebhookDelivery.status)).endpoint_id
                await until(functools.partial(_retrying, waiting), "retrying")
                if change == "disabled":
                    await self.registry.disable(endpoint_id, actor="record")
                else:
                    await self.registry.delete(endpoint_id, actor="record")
                await asyncio.sleep(REGISTRY_CACHE_SECONDS + 0.2)
                await waiting.signal(WebhookDelivery.retry_now)
                result = await waiting.result()
                assert result.dead_letter_reason is reason
            await save(f"WebhookDelivery-registry-{change}", waiting)

        # Gone at once, then discarded by an operator.
        async with Receiver(scripted(Respond(410))) as rx:
            gone = await self.deliver(rx.url)
            result = await gone.result()
            assert result.dead_letter_reason is DeadLetterReason.GONE
            await save("WebhookDelivery-gone", gone)
            letter = self.letter(result)
            await letter.signal(DeadLetter.discard, DiscardRequest(requested_by="record"))
            await letter.result()
            await save("DeadLetter-discarded", letter)

        # A long backoff cut short by `retry_now`.
        async with Receiver(scripted(Respond(503))) as rx:
            waiting = await self.deliver(
                rx.url,
                retry=RetrySchedule(schedule_seconds=[0, 3600], jitter=0, throttled_min_seconds=0),
            )

            async def retrying() -> bool:
                status = await waiting.query(WebhookDelivery.status)
                return status.state is DeliveryState.RETRYING

            await until(retrying, "retrying")
            await waiting.signal(WebhookDelivery.retry_now)
            assert (await waiting.result()).state is DeliveryState.DELIVERED
            assert len(rx.requests) == 2
        await save("WebhookDelivery-retry-now", waiting)

        # The next attempt would start after the maximum age: dead-lettered instead.
        async with Receiver(scripted(Respond(500))) as rx:
            old = await self.deliver(
                rx.url,
                retry=RetrySchedule(
                    schedule_seconds=[0, 5], jitter=0, max_age_seconds=2, throttled_min_seconds=0
                ),
            )
            result = await old.result()
            assert result.dead_letter_reason is DeadLetterReason.MAX_AGE
            assert result.attempts == 1
        await save("WebhookDelivery-max-age", old)

        # Unattended for the whole retention period: expires.
        async with Receiver(scripted(Respond(410))) as rx:
            request = build_request(
                endpoint=await self.endpoint(rx.url),
                event_type="stream.settled",
                data=settled(),
                event_id=f"evt_{uuid.uuid4().hex[:8]}",
                retry=SCHEDULE,
            )
            request = request.model_copy(
                update={
                    "options": request.options.model_copy(
                        update={"dead_letter_retention_seconds": 1}
                    )
                }
            )
            await self.publisher.start(request)
            handle = client.get_workflow_handle_for(WebhookDelivery.run, request.delivery_id)
            letter = self.letter(await handle.result())
            assert (await letter.result()).state is DeadLetterState.EXPIRED
        await save("DeadLetter-expired", letter)

    # -- WebhookDelivery's input edges, and a redelivery with a new schedule --------------

    async def edges(self, settings: Settings) -> None:
        """(The internal-error scenario, a wait too long for a datetime, is beyond the
        bounds now: refused at publish, dead-lettered as invalid_input by the workflow. Its
        history from before lives in `histories/2026-12-01-before-input-bounds/`.)"""
        client = self.client
        async with Receiver(scripted(Respond(503), then=Respond(200))) as rx:
            endpoint = await self.endpoint(rx.url)
            request = build_request(
                endpoint=endpoint,
                event_type="stream.settled",
                data=settled(),
                event_id=f"evt_{uuid.uuid4().hex[:8]}",
                retry=ONCE,
            )
            raw = request.model_dump(mode="json")

            async def started(workflow_id: str, value: object) -> Delivery:
                await client.start_workflow(
                    "WebhookDelivery", value, id=workflow_id, task_queue=settings.task_queue
                )
                return client.get_workflow_handle_for(WebhookDelivery.run, workflow_id)

            # Fields this worker does not know (a newer publisher): ignored, delivered.
            newer = {**raw, "priority": "high", "options": {**raw["options"], "fan_in": 1}}
            newer["event_id"] = f"evt_{uuid.uuid4().hex[:8]}"
            newer["delivery_id"] = delivery_id(endpoint.id, newer["event_id"])
            unknown = await started(newer["delivery_id"], newer)
            assert (await unknown.result()).state is DeliveryState.DEAD_LETTERED  # the 503
            unknown_letter = self.letter(await unknown.result())
            await unknown_letter.signal(
                DeadLetter.redeliver,
                RedeliverRequest(
                    requested_by="record",
                    retry=RetrySchedule(schedule_seconds=[0, 0.2], jitter=0),
                ),
            )
            view = await unknown_letter.result()
            assert view.redelivery_run_id is not None
            rerun = client.get_workflow_handle_for(
                WebhookDelivery.run, unknown.id, run_id=view.redelivery_run_id
            )
            assert (await rerun.result()).state is DeliveryState.DELIVERED
        await save("WebhookDelivery-unknown-fields", unknown)
        await save("DeadLetter-redelivered-new-schedule", unknown_letter)
        await save("WebhookDelivery-redelivered-new-schedule", rerun)

        # Not a delivery request at all: the dead-letter queue, raw input kept; redeliver
        # is ignored (nothing to deliver), discard closes it.
        malformed = await started(
            f"msg_{uuid.uuid4().hex[:8]}", {"delivery_id": "has spaces", "body": 7}
        )
        letter = await self.refused(malformed)
        await letter.signal(DeadLetter.redeliver, RedeliverRequest(requested_by="record"))
        await letter.signal(DeadLetter.discard, DiscardRequest(requested_by="record"))
        assert (await letter.result()).state is DeadLetterState.DISCARDED
        await save("WebhookDelivery-invalid-input", malformed)
        await save("DeadLetter-invalid-input", letter)

        # A delivery id derived some other way: it would collide across endpoints.
        wrong = {**raw, "delivery_id": f"msg_{uuid.uuid4().hex[:8]}"}
        mismatched = await started(wrong["delivery_id"], wrong)
        await self.refused(mismatched)
        await save("WebhookDelivery-wrong-delivery-id", mismatched)

    async def refused(self, handle: Delivery) -> WorkflowHandle[DeadLetter, DeadLetterView]:
        """An invalid input's run fails once its dead letter (generation 0) has started."""
        cause: BaseException | None = None
        try:
            await handle.result()
        except WorkflowFailureError as failed:
            cause = failed.cause
        assert isinstance(cause, ApplicationError), "an invalid input's run did not fail"
        assert cause.type == INVALID_INPUT_ERROR
        letter = self.client.get_workflow_handle_for(DeadLetter.run, dead_letter_id(handle.id, 0))
        view = await letter.query(DeadLetter.entry)
        assert view.entry.reason is DeadLetterReason.INVALID_INPUT
        return letter

    async def activity_error(self, settings: Settings) -> None:
        """The send activity raises (a registry row corrupted behind the service's back, so
        its settings no longer validate): a recorded failed attempt, then delivered."""
        engine = self.registry.store.engine

        async def set_settings(endpoint_id: str, value: dict[str, object]) -> None:
            async with engine.begin() as conn:
                await conn.execute(
                    update(endpoints).where(endpoints.c.id == endpoint_id).values(settings=value)
                )

        async with Receiver() as rx:
            endpoint = await self.endpoint(rx.url)
            request = build_request(
                endpoint=endpoint, event_type="stream.settled", data=settled(), retry=SCHEDULE
            )
            await set_settings(endpoint.id, {"timeout_seconds": -1})
            try:
                delivery_id = await self.publisher.start(request)  # published before it broke
                delivery = self.client.get_workflow_handle_for(WebhookDelivery.run, delivery_id)

                async def retrying() -> bool:
                    status = await delivery.query(WebhookDelivery.status)
                    return status.state is DeliveryState.RETRYING

                await until(retrying, "the failed attempt is recorded")
            finally:
                await set_settings(endpoint.id, {})
            result = await delivery.result()
            assert result.state is DeliveryState.DELIVERED
            assert result.attempts == 2
        await save("WebhookDelivery-activity-error", delivery)

    # -- EndpointCircuit, and deliveries it holds ------------------------------------------

    async def circuit(self) -> None:
        """Trip, a failed probe (reopen), a successful probe (close), held deliveries woken."""
        client = self.client
        endpoint = f"ep_trip_{uuid.uuid4().hex[:6]}"
        status = {"code": 500}

        def answer(_: ReceivedRequest) -> Respond:
            return Respond(status["code"])

        retry = RetrySchedule(
            schedule_seconds=[0, 0.5], max_attempts=100, jitter=0, throttled_min_seconds=0
        )
        async with Receiver(answer) as rx:
            deliveries = [await self.deliver(rx.url, endpoint_id=endpoint, retry=retry)]

            async def tripped() -> bool:
                snapshot = await circuit_state(client, endpoint)
                return snapshot is not None and snapshot.phase is not CircuitPhase.CLOSED

            await until(tripped, "the circuit opens")
            deliveries += [
                await self.deliver(rx.url, endpoint_id=endpoint, retry=retry) for _ in range(4)
            ]
            # Held at once, and for longer than its maximum age.
            too_old = await self.deliver(
                rx.url,
                endpoint_id=endpoint,
                retry=RetrySchedule(schedule_seconds=[0, 0.5], jitter=0, max_age_seconds=1),
            )
            result = await too_old.result()
            assert result.dead_letter_reason is DeadLetterReason.MAX_AGE, result
            assert result.attempts == 0
            await save("WebhookDelivery-circuit-max-age", too_old)

            async def probe_failed() -> bool:
                snapshot = await circuit_state(client, endpoint)
                return snapshot is not None and snapshot.trips >= 2

            await until(probe_failed, "a probe fails and the circuit reopens")
            status["code"] = 200
            results = await asyncio.wait_for(
                asyncio.gather(*(d.result() for d in deliveries)), BOUND
            )
            assert all(r.state is DeliveryState.DELIVERED for r in results)
            circuit = client.get_workflow_handle(circuit_id(endpoint), result_type=CircuitSnapshot)
            final: CircuitSnapshot = await asyncio.wait_for(circuit.result(), BOUND)
            assert final.phase is CircuitPhase.CLOSED
        await save("EndpointCircuit-trip-probe-close", circuit)
        woken = [
            d
            for d in deliveries
            if upserted(h := await events(d), DeliveryState.CIRCUIT_OPEN.value)
            and signalled(h, "retry_now")
        ]
        assert woken, "no delivery was held and then woken by the circuit"
        await save("WebhookDelivery-circuit-held-woken", woken[0])

    async def disable_enable(self, settings: Settings) -> None:
        """An operator disables a failing endpoint (its delivery is dead-lettered), enables it."""
        client = self.client
        endpoint = f"ep_disable_{uuid.uuid4().hex[:6]}"
        retry = RetrySchedule(
            schedule_seconds=[0, 0.5], max_attempts=100, jitter=0, throttled_min_seconds=0
        )
        async with Receiver(scripted(then=Respond(500))) as rx:
            delivery = await self.deliver(rx.url, endpoint_id=endpoint, retry=retry)

            async def circuit_exists() -> bool:
                return await circuit_state(client, endpoint) is not None

            await until(circuit_exists, "the first report starts the circuit")
            # As `webhooks circuit disable` does it: signal-with-start.
            await client.start_workflow(
                CIRCUIT_WORKFLOW,
                CircuitInput(
                    endpoint_id=endpoint,
                    config=settings.circuit,
                    control_task_queue=settings.control_queue,
                ),
                id=circuit_id(endpoint),
                task_queue=settings.control_queue,
                start_signal="disable",
                start_signal_args=[OperatorRequest(requested_by="record", reason="replay")],
            )
            result = await asyncio.wait_for(delivery.result(), BOUND)
            assert result.dead_letter_reason is DeadLetterReason.ENDPOINT_DISABLED
            await save("WebhookDelivery-endpoint-disabled", delivery)
            circuit = client.get_workflow_handle(circuit_id(endpoint), result_type=CircuitSnapshot)
            await circuit.signal("enable", OperatorRequest(requested_by="record"))
            final: CircuitSnapshot = await asyncio.wait_for(circuit.result(), BOUND)
            assert final.phase is CircuitPhase.CLOSED
            assert final.disabled_reason is None
        history = await events(circuit)
        assert signalled(history, "disable")
        assert signalled(history, "enable")
        assert upserted(history, CircuitPhase.DISABLED.value)
        await save("EndpointCircuit-disable-enable", circuit)

    async def continue_as_new(self, settings: Settings) -> None:
        """Enough reports to pass `max_history_events`: the circuit continues as new, from
        the delivery queue (where circuits ran before the control queue) to the control
        queue."""
        client = self.client
        endpoint = f"ep_can_{uuid.uuid4().hex[:6]}"
        config = CircuitConfig(max_history_events=100, window_seconds=5, consecutive_failures=None)
        circuit = await _start_circuit(client, settings, endpoint, config, settings.task_queue)
        first = client.get_workflow_handle(circuit.id, run_id=circuit.first_execution_run_id)

        async def continued() -> bool:
            return (await first.describe()).status is WorkflowExecutionStatus.CONTINUED_AS_NEW

        while not await continued():
            with_failure = OutcomeReport(successes=1, failures=1, trailing_failures=0)
            await circuit.signal("report", with_failure)
            await asyncio.sleep(0.05)
        await save("EndpointCircuit-continued-as-new", first)
        latest = client.get_workflow_handle(circuit.id, result_type=CircuitSnapshot)
        final: CircuitSnapshot = await asyncio.wait_for(latest.result(), BOUND)
        assert final.reports_received > 0, "the new run carries the state over"
        await save("EndpointCircuit-after-continue-as-new", latest)
        await self.close_continuing_as_new(settings)

    async def close_continuing_as_new(self, settings: Settings) -> None:
        """The task that closes an open circuit also continues it as new (a burst of
        operator signals pushes its history past the limit): the new run publishes the
        carried close, wakes the held deliveries and completes."""
        client = self.client
        endpoint = f"ep_can_close_{uuid.uuid4().hex[:6]}"
        config = CircuitConfig(max_history_events=100, cooldown_seconds=600)
        circuit = await _start_circuit(client, settings, endpoint, config, settings.control_queue)
        await circuit.signal("report", OutcomeReport(failures=25, trailing_failures=25))

        async def opened() -> bool:
            snapshot = await circuit_state(client, endpoint)
            return snapshot is not None and snapshot.phase is CircuitPhase.OPEN

        await until(opened, "the circuit opened")
        while len(await events(circuit)) < config.max_history_events - 30:
            await circuit.signal("report", OutcomeReport(failures=1, trailing_failures=1))
        closing_run = (await circuit.describe()).run_id
        await asyncio.gather(
            circuit.signal("reset", OperatorRequest(requested_by="record")),
            *(circuit.signal("enable", OperatorRequest(requested_by="record")) for _ in range(40)),
        )
        latest = client.get_workflow_handle(circuit.id, result_type=CircuitSnapshot)
        final: CircuitSnapshot = await asyncio.wait_for(latest.result(), BOUND)
        assert final.phase is CircuitPhase.CLOSED
        assert (await latest.describe()).run_id != closing_run, "it should have continued"
        await save("EndpointCircuit-closed-after-continue-as-new", latest)


GROUPS = (
    "plain",
    "activity-error",
    "bulk",
    "edges",
    "circuit",
    "disable-enable",
    "continue-as-new",
)


async def main(only: set[str]) -> None:
    HISTORIES.mkdir(exist_ok=True)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        os.environ.pop(var, None)
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN / "temporal"),
        search_attributes=sa.ALL,
        data_converter=pydantic_data_converter,
        dev_server_extra_args=[
            "--dynamic-config-value",
            "frontend.enableUpdateWorkflowExecution=true",
        ],
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(
                task_queue="webhooks-replay",
                database_url=f"sqlite:///{Path(tmp) / 'registry.db'}",
                secret_keys=f"replay:{generate_key()}",
                registry_cache_seconds=REGISTRY_CACHE_SECONDS,
                allow_private_destinations=True,
                http_timeout_seconds=1,
                connect_timeout_seconds=1,
            )
            async with open_registry(settings, migrate=True) as registry:
                async with running_worker(env.client, settings):
                    recorder = Recorder(env.client, settings, registry)
                    if "plain" in only:
                        await recorder.plain()
                    if "activity-error" in only:
                        await recorder.activity_error(settings)
                    if "bulk" in only:
                        await recorder.bulk(settings)
                    if "edges" in only:
                        await recorder.edges(settings)
                circuit = settings.model_copy(
                    update={"task_queue": "webhooks-replay-circuit", "circuit": CIRCUIT}
                )
                async with running_worker(env.client, circuit):
                    recorder = Recorder(env.client, circuit, registry)
                    if "circuit" in only:
                        await recorder.circuit()
                    if "disable-enable" in only:
                        await recorder.disable_enable(circuit)
                    if "continue-as-new" in only:
                        await recorder.continue_as_new(circuit)
    finally:
        await env.shutdown()


if __name__ == "__main__":
    # `python -m tests.replay.record [group ...]` records only those groups (default: all).
    chosen = set(sys.argv[1:]) or set(GROUPS)
    if unknown := chosen - set(GROUPS):
        sys.exit(f"unknown group(s) {sorted(unknown)}; choose from {', '.join(GROUPS)}")
    asyncio.run(main(chosen))
    # The SDK's Rust runtime threads can abort CPython's finalization (SIGABRT, "PyGILState_
    # Release: thread state must be current", temporalio/sdk-python#300); everything is written.
    os._exit(0)
