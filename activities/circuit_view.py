"""The worker's side of the endpoint circuits: a cached view that gates sends, and the
aggregated reports that keep the `EndpointCircuit` workflows informed.

Cost model, which the tests count:
- an endpoint that has not failed recently has no entry here: gating it is a dict lookup,
  and nothing is sent to Temporal (no signal, no query, no history event);
- a failing endpoint gets at most one `report` signal per flush interval from this worker,
  one `state` query per refresh interval (queries add no history), and one
  `acquire_probe` update per cooldown.
The local copy of the state machine trips on this worker's own failures at once, so a
dead endpoint is cut off after a handful of requests, before the workflow has even heard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import activity
from temporalio.client import Client, RPCError, WorkflowUpdateFailedError
from temporalio.service import RPCStatusCode

from webhooks import search_attributes as sa
from webhooks.circuit import (
    Circuit,
    CircuitConfig,
    CircuitInput,
    CircuitPhase,
    CircuitSnapshot,
    OutcomeReport,
    Signal,
)
from webhooks.ids import circuit_id
from webhooks.models import DeliveryState, Gate

log = logging.getLogger(__name__)

CIRCUIT_WORKFLOW = "EndpointCircuit"
PROBE_POLL_SECONDS = 1.0
DISCOVER_EVERY_TICKS = 5
"""One visibility query per this many flush intervals, whatever the number of endpoints."""


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Endpoint:
    circuit: Circuit
    pending: OutcomeReport = field(default_factory=OutcomeReport)
    refreshed_at: float = 0.0
    last_failure: float = 0.0
    refreshing: asyncio.Task[None] | None = None
    acquiring: asyncio.Task[None] | None = None
    probe_granted: bool = False
    """The circuit granted this worker the probe; the next delivery to ask takes it."""
    probe_in_flight: bool = False
    probe_denied_until: datetime | None = None


class CircuitView:
    """Per-worker cache of endpoint circuits plus the report aggregator."""

    def __init__(
        self,
        client: Client,
        *,
        task_queue: str,
        config: CircuitConfig,
        flush_interval: float = 1.0,
        refresh_interval: float = 1.0,
    ) -> None:
        self._client = client
        self._task_queue = task_queue
        self._config = config
        self._flush_interval = flush_interval
        self._refresh_interval = refresh_interval
        self._endpoints: dict[str, _Endpoint] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.signals_sent = 0

    async def __aenter__(self) -> CircuitView:
        self._flusher = asyncio.create_task(self._flush_forever())
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._flusher is not None
        self._flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._flusher
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.flush()

    # -- gating ---------------------------------------------------------------------------

    def gate(self, endpoint_id: str) -> Gate:
        """May a delivery to this endpoint send now? Never blocks and never raises.

        It runs inside a local activity, which holds a workflow task slot: waiting here on
        a query or update (which need a workflow task on this same worker) could deadlock
        the worker. So it answers from the cache and refreshes in the background.
        """
        entry = self._endpoints.get(endpoint_id)
        if entry is None:
            return Gate(allow=True)  # Not failed recently: closed, and free.
        now = _now()
        stale = time.monotonic() - entry.refreshed_at > self._refresh_interval
        if stale and entry.refreshing is None:
            entry.refreshing = self._background(self._refresh(endpoint_id, entry))
        gate = entry.circuit.gate(now)
        if not gate.probe:
            return gate
        if entry.probe_granted:
            entry.probe_granted, entry.probe_in_flight = False, True
            return Gate(allow=True, probe=True)
        if entry.probe_in_flight or (entry.probe_denied_until and now < entry.probe_denied_until):
            return Gate(allow=False, retry_at=now + entry.circuit.current_cooldown())
        if entry.acquiring is None:
            entry.acquiring = self._background(self._acquire_probe(endpoint_id, entry))
        # Ask again shortly: by then the grant (or the refusal) is here.
        return Gate(allow=False, retry_at=now + timedelta(seconds=PROBE_POLL_SECONDS))

    def _background(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _refresh(self, endpoint_id: str, entry: _Endpoint) -> None:
        try:
            handle = self._client.get_workflow_handle(circuit_id(endpoint_id))
            snapshot = await handle.query("state", result_type=CircuitSnapshot)
            local = Circuit(snapshot, self._config)
            # What we saw but have not reported yet still counts.
            if not entry.pending.empty:
                local.record(entry.pending.model_copy(update={"probe_succeeded": None}), _now())
            entry.circuit = local
        except RPCError as err:
            # NOT_FOUND: not started yet, our local copy is all there is.
            if err.status != RPCStatusCode.NOT_FOUND:
                log.warning("circuit query for %s failed: %s", endpoint_id, err.message)
        finally:
            entry.refreshed_at = time.monotonic()
            entry.refreshing = None

    async def _acquire_probe(self, endpoint_id: str, entry: _Endpoint) -> None:
        try:
            handle = self._client.get_workflow_handle(circuit_id(endpoint_id))
            gate = await handle.execute_update("acquire_probe", result_type=Gate)
            if gate.allow and gate.probe:
                entry.probe_granted = True
            else:
                entry.probe_denied_until = gate.retry_at or _now() + timedelta(
                    seconds=PROBE_POLL_SECONDS
                )
        except (RPCError, WorkflowUpdateFailedError) as err:
            log.warning("cannot acquire a probe for %s: %s", endpoint_id, err)
        finally:
            entry.acquiring = None

    # -- reporting ------------------------------------------------------------------------

    def record(self, endpoint_id: str, signal: Signal, *, probe: bool = False) -> None:
        """Count one attempt's outcome; free for endpoints that have not failed recently."""
        entry = self._endpoints.get(endpoint_id)
        if entry is None:
            if signal in (Signal.SUCCESS, Signal.NEUTRAL) and not probe:
                return
            entry = self._endpoints[endpoint_id] = _Endpoint(
                Circuit(CircuitSnapshot(endpoint_id=endpoint_id), self._config)
            )
        p = entry.pending
        if signal is Signal.SUCCESS:
            p.successes += 1
            p.trailing_failures = 0
        elif signal is Signal.FAILURE:
            p.failures += 1
            p.trailing_failures += 1
            entry.last_failure = time.monotonic()
        elif signal is Signal.GONE:
            p.gone = True
        single = OutcomeReport(
            successes=int(signal is Signal.SUCCESS),
            failures=int(signal is Signal.FAILURE),
            trailing_failures=int(signal is Signal.FAILURE),
            gone=signal is Signal.GONE,
            probe_succeeded=(signal is Signal.SUCCESS) if probe else None,
        )
        entry.circuit.record(single, _now())
        if probe:
            entry.probe_in_flight = False
            p.probe_succeeded = signal is Signal.SUCCESS
            # A probe result changes the circuit for everyone: report it now.
            self._background(self._flush_one(endpoint_id, entry))

    async def flush(self) -> None:
        for endpoint_id, entry in list(self._endpoints.items()):
            await self._flush_one(endpoint_id, entry)
            idle = time.monotonic() - entry.last_failure > self._config.window_seconds
            if idle and entry.pending.empty and entry.circuit.s.phase is CircuitPhase.CLOSED:
                del self._endpoints[endpoint_id]  # Healthy again: back to zero cost.

    async def _flush_one(self, endpoint_id: str, entry: _Endpoint) -> None:
        report, entry.pending = entry.pending, OutcomeReport()
        if report.empty:
            return
        try:
            await self._client.start_workflow(
                CIRCUIT_WORKFLOW,
                CircuitInput(endpoint_id=endpoint_id, config=self._config),
                id=circuit_id(endpoint_id),
                task_queue=self._task_queue,
                start_signal="report",
                start_signal_args=[report],
            )
            self.signals_sent += 1
        except RPCError as err:
            log.warning("circuit report for %s failed: %s", endpoint_id, err.message)

    async def discover(self) -> None:
        """Learn every circuit that is not closed, with one visibility query.

        So a new worker, or an endpoint an operator disabled while it was healthy, is
        gated without this worker having to fail against it first.
        """
        query = (
            f"WorkflowType='{CIRCUIT_WORKFLOW}' AND ExecutionStatus='Running' "
            f"AND {sa.STATUS.name}!='{CircuitPhase.CLOSED.value}'"
        )
        async for wf in self._client.list_workflows(query):
            endpoint_id = wf.typed_search_attributes.get(sa.ENDPOINT_ID)
            if endpoint_id and endpoint_id not in self._endpoints:
                entry = self._endpoints[endpoint_id] = _Endpoint(
                    Circuit(CircuitSnapshot(endpoint_id=endpoint_id), self._config)
                )
                await self._refresh(endpoint_id, entry)

    async def _flush_forever(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(self._flush_interval)
            ticks += 1
            try:
                await self.flush()
                if ticks % DISCOVER_EVERY_TICKS == 1:
                    await self.discover()
            except Exception:
                log.exception("circuit flush failed")


class CircuitActivities:
    """What the circuit workflow needs from the outside world."""

    def __init__(self, client: Client, *, wake_per_second: float = 50) -> None:
        self._client = client
        self._wake_per_second = wake_per_second

    @activity.defn(name="wake_deliveries")
    async def wake_deliveries(self, endpoint_id: str) -> int:
        """Signal `retry_now` to every waiting delivery of the endpoint, paced."""
        query = (
            f"WorkflowType='WebhookDelivery' AND ExecutionStatus='Running' AND "
            f"{sa.ENDPOINT_ID.name}='{endpoint_id}' AND {sa.STATUS.name} IN "
            f"('{DeliveryState.RETRYING.value}', '{DeliveryState.CIRCUIT_OPEN.value}')"
        )
        woken = 0
        started = time.monotonic()
        async for wf in self._client.list_workflows(query):
            delay = started + woken / self._wake_per_second - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            with contextlib.suppress(RPCError):  # It may have just finished.
                await self._client.get_workflow_handle(wf.id).signal("retry_now")
                woken += 1
            activity.heartbeat(woken)
        return woken
