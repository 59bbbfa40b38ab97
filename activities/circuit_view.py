"""The worker's side of the endpoint circuits: a cached view that gates sends, and the
aggregated reports that keep the `EndpointCircuit` workflows informed.

Cost model, which the tests count:
- an endpoint that has not failed recently has no entry here: gating it is a dict lookup,
  and nothing is sent to Temporal (no signal, no query, no history event);
- a failing endpoint gets at most one `report` signal per flush interval from this worker,
  one `state` query per refresh interval while deliveries ask (queries add no history),
  and one `acquire_probe` update per cooldown;
- deliveries held by an open circuit: one per worker comes back for the next probe, the
  rest sleep a whole maximum cooldown (`wake_deliveries` wakes them when it closes).
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
from temporalio.client import (
    Client,
    RPCError,
    WorkflowExecutionStatus,
    WorkflowUpdateFailedError,
)
from temporalio.service import RPCStatusCode

from webhooks.core import search_attributes as sa
from webhooks.core.circuit import (
    VIEW_LAG_SECONDS,
    Circuit,
    CircuitConfig,
    CircuitInput,
    CircuitPhase,
    CircuitSnapshot,
    OutcomeReport,
    Signal,
)
from webhooks.core.ids import circuit_id
from webhooks.core.models import DeliveryState, Gate
from webhooks.core.names import CIRCUIT_WORKFLOW, DELIVERY_WORKFLOW
from webhooks.core.visibility import quote

log = logging.getLogger(__name__)

PROBE_POLL_SECONDS = 1.0
DISCOVER_EVERY_TICKS = 5
"""One visibility query per this many flush intervals, whatever the number of endpoints."""
WAKE_PER_SECOND = 200.0
"""How fast `wake_deliveries` releases a recovered endpoint's queue: about what one worker
delivers at most, so the drain runs at the healthy rate; if the endpoint fails again, the
circuit trips again after a handful of requests and holds the rest."""
WAKE_IN_FLIGHT = 50
SELF_WAKE_SECONDS = 5.0
"""`wake_deliveries` leaves a delivery due this soon to its own timer (see there)."""
ASKED_RECENTLY_SECONDS = 10.0
"""While deliveries asked about a troubled endpoint this recently, its copy is kept fresh.

Longer than a delivery's re-ask after a short wait (PROBE_POLL_SECONDS plus the delivery's
jitter), so a re-ask always finds a copy it can trust."""


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Endpoint:
    circuit: Circuit
    pending: OutcomeReport = field(default_factory=OutcomeReport)
    refreshed_at: float = 0.0
    evidence_at: float = 0.0
    """When this worker last learned what the circuit workflow may not know yet: a local
    trip, or a report that reached it. A query asked earlier may predate it."""
    last_failure: float = 0.0
    refreshing: asyncio.Task[None] | None = None
    refresh_started: float = 0.0
    acquiring: asyncio.Task[None] | None = None
    asked_at: float = 0.0
    probe_granted: bool = False
    """The circuit granted this worker the probe; the next delivery to ask takes it."""
    probe_taken_at: float | None = None
    """When a delivery took the probe; it counts as in flight until reported (or the lease)."""
    probe_done_at: float | None = None
    """When this worker's last probe reported back."""
    probe_denied_until: datetime | None = None
    candidate_at: datetime | None = None
    """When the delivery held to come back first (a candidate for the probe) is due."""


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
        if 2 * refresh_interval >= VIEW_LAG_SECONDS:
            raise ValueError(f"refresh_interval must be under {VIEW_LAG_SECONDS / 2} s")
        self._endpoints: dict[str, _Endpoint] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._reports: set[asyncio.Task[None]] = set()
        self.signals_sent = 0

    async def __aenter__(self) -> CircuitView:
        self._flusher = asyncio.create_task(self._flush_forever())
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._flusher is not None
        self._flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._flusher
        # Queries and probe requests: nothing is lost by dropping them (a granted probe's
        # lease expires), and with the worker gone they could only time out. Reports go.
        for task in self._tasks - self._reports:
            task.cancel()
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
        now, mono = _now(), time.monotonic()
        entry.asked_at = mono
        age = mono - entry.refreshed_at
        if age > self._refresh_interval and entry.refreshing is None:
            self._start_refresh(endpoint_id, entry)
        gate = entry.circuit.gate(now)
        if age > 2 * self._refresh_interval and not gate.allow and not gate.probe:
            # An old copy may dead-letter a delivery after an operator's `enable`, or hold
            # one that `wake_deliveries` just woke for a whole cooldown: ask again once the
            # refresh is in. Unless queries are slow (a busy worker): then polling would
            # only add load, and holds are reconciled by `discover` instead.
            slow = entry.refreshing is not None and mono - entry.refresh_started > 1.0
            if gate.disabled or not slow:
                return Gate(allow=False, retry_at=now + timedelta(seconds=PROBE_POLL_SECONDS))
        if gate.allow or gate.disabled:
            return gate
        cooldown_later = now + entry.circuit.current_cooldown()
        if not gate.probe:
            assert gate.retry_at is not None  # open: until the next probe
            return self._hold(entry, gate.retry_at, now)
        if entry.probe_granted:
            entry.probe_granted, entry.probe_taken_at = False, mono
            return Gate(allow=True, probe=True)
        lease = self._config.probe_lease_seconds
        in_flight = entry.probe_taken_at is not None and mono - entry.probe_taken_at < lease
        if in_flight:
            # Its result closes the circuit (which wakes everyone) or reopens it.
            return self._hold(entry, cooldown_later, now)
        if entry.probe_denied_until and now < entry.probe_denied_until:
            return self._hold(entry, entry.probe_denied_until, now)
        if entry.acquiring is not None:
            return self._hold(entry, cooldown_later, now)
        entry.acquiring = self._background(self._acquire_probe(endpoint_id, entry))
        # This delivery asks again shortly: by then the grant (or the refusal) is here.
        return Gate(allow=False, retry_at=now + timedelta(seconds=PROBE_POLL_SECONDS))

    def _hold(self, entry: _Endpoint, until: datetime, now: datetime) -> Gate:
        """Hold a delivery until `until`, or much longer if another one already comes back.

        Only one delivery per worker needs to be back when the next probe may go (it may
        become the probe); the circuit closing wakes every other one (`wake_deliveries`).
        So the rest wait a whole maximum cooldown instead of all waking every cooldown to
        be told to wait again: a dead endpoint's queue costs a few checks per cooldown,
        not one per delivery.
        """
        if entry.candidate_at is None or entry.candidate_at < now:
            entry.candidate_at = until
            return Gate(allow=False, retry_at=until)
        long_hold = timedelta(seconds=self._config.max_cooldown_seconds)
        return Gate(allow=False, retry_at=max(until, entry.candidate_at) + long_hold)

    def _background(
        self, work: Coroutine[Any, Any, None], *, report: bool = False
    ) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if report:
            self._reports.add(task)
            task.add_done_callback(self._reports.discard)
        return task

    def _start_refresh(self, endpoint_id: str, entry: _Endpoint) -> None:
        entry.refresh_started = time.monotonic()
        entry.refreshing = self._background(self._refresh(endpoint_id, entry))

    async def _refresh(self, endpoint_id: str, entry: _Endpoint) -> None:
        # A copy is as old as the question: the answer reflects everything before it.
        asked = entry.refresh_started
        try:
            handle = self._client.get_workflow_handle(circuit_id(endpoint_id))
            snapshot = await handle.query("state", result_type=CircuitSnapshot)
            if entry.evidence_at > asked:
                return  # Our copy is newer than that answer: keep it, ask again later.
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
            entry.refreshed_at = asked
            entry.refreshing = None

    async def _acquire_probe(self, endpoint_id: str, entry: _Endpoint) -> None:
        try:
            handle = self._client.get_workflow_handle(circuit_id(endpoint_id))
            gate = await handle.execute_update("acquire_probe", result_type=Gate)
            if gate.allow and gate.probe:
                entry.probe_granted = True
            else:
                now = _now()
                if not gate.retry_at:
                    # Closed or disabled: our copy is out of date; refresh it at the next ask.
                    entry.refreshed_at = 0.0
                until = gate.retry_at or now + timedelta(seconds=PROBE_POLL_SECONDS)
                lease = self._config.probe_lease_seconds
                if entry.probe_done_at and time.monotonic() - entry.probe_done_at < lease:
                    # The lease may be our own probe's, whose result is still on its way:
                    # do not sit out a whole lease for it.
                    until = min(until, now + entry.circuit.current_cooldown())
                entry.probe_denied_until = until
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
            # Any answer but a failure proves the endpoint up (a 4xx included).
            probe_succeeded=(signal is not Signal.FAILURE) if probe else None,
        )
        before = entry.circuit.s.phase
        entry.circuit.record(single, _now())
        if entry.circuit.s.phase is not before:
            # Our own evidence: as fresh as it gets.
            entry.refreshed_at = entry.evidence_at = time.monotonic()
        if probe:
            entry.probe_taken_at, entry.probe_done_at = None, time.monotonic()
            p.probe_succeeded = single.probe_succeeded
            # A probe result changes the circuit for everyone: report it now.
            self._background(self._flush_one(endpoint_id, entry), report=True)

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
            entry.evidence_at = time.monotonic()
        except RPCError as err:
            log.warning("circuit report for %s failed: %s", endpoint_id, err.message)

    async def discover(self) -> None:
        """Learn every circuit that is not closed, with one visibility query.

        So a new worker, or an endpoint an operator disabled while it was healthy, is
        gated without this worker having to fail against it first. A copy whose phase the
        listing contradicts (closed, enabled, disabled since) is queried again.
        """
        query = (
            f"WorkflowType={quote(CIRCUIT_WORKFLOW)} AND ExecutionStatus='Running' "
            f"AND TaskQueue={quote(self._task_queue)} "
            f"AND {sa.STATUS.name}!={quote(CircuitPhase.CLOSED.value)}"
        )
        listed: dict[str, CircuitPhase] = {}
        async for wf in self._client.list_workflows(query):
            attributes = wf.typed_search_attributes
            endpoint_id = attributes.get(sa.ENDPOINT_ID)
            if endpoint_id:
                listed[endpoint_id] = CircuitPhase(attributes.get(sa.STATUS) or "open")
        for endpoint_id, phase in listed.items():
            if endpoint_id not in self._endpoints:
                # Start from the listed phase; the query (in the background, so that one
                # slow circuit cannot stall reporting) fills in the rest.
                self._endpoints[endpoint_id] = _Endpoint(
                    Circuit(CircuitSnapshot(endpoint_id=endpoint_id, phase=phase), self._config)
                )
        for endpoint_id, entry in self._endpoints.items():
            phase = listed.get(endpoint_id, CircuitPhase.CLOSED)
            contradicted = entry.circuit.s.phase is not phase or not entry.refreshed_at
            if contradicted and entry.refreshing is None:
                self._start_refresh(endpoint_id, entry)

    def _refresh_asked(self) -> None:
        """Keep the copies of troubled endpoints that deliveries are asking about fresh."""
        mono = time.monotonic()
        for endpoint_id, entry in self._endpoints.items():
            if (
                entry.circuit.s.phase is not CircuitPhase.CLOSED
                and mono - entry.asked_at < ASKED_RECENTLY_SECONDS
                and mono - entry.refreshed_at > self._refresh_interval
                and entry.refreshing is None
            ):
                self._start_refresh(endpoint_id, entry)

    async def _flush_forever(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(self._flush_interval)
            ticks += 1
            try:
                await self.flush()
                self._refresh_asked()
                if ticks % DISCOVER_EVERY_TICKS == 1:
                    await self.discover()
            except Exception:
                log.exception("circuit flush failed")


class CircuitActivities:
    """What the circuit workflow needs from the outside world."""

    def __init__(
        self,
        client: Client,
        *,
        wake_per_second: float = WAKE_PER_SECOND,
        settle_seconds: float = VIEW_LAG_SECONDS,
    ) -> None:
        self._client = client
        self._wake_per_second = wake_per_second
        self._settle_seconds = settle_seconds

    @activity.defn(name="wake_deliveries")
    async def wake_deliveries(self, endpoint_id: str) -> int:
        """Signal `retry_now` to every waiting delivery of the endpoint, paced.

        Signals go out on a schedule (not one after another), so a slow server does not
        slow the pace. A delivery about to wake by itself is signalled only after that
        moment: a signal landing while its last send completes it fails that workflow
        task, and its local activity (the POST) runs again: a duplicate request.
        """
        query = (
            f"WorkflowType={quote(DELIVERY_WORKFLOW)} AND ExecutionStatus='Running' AND "
            f"{sa.ENDPOINT_ID.name}={quote(endpoint_id)} AND {sa.STATUS.name} IN "
            f"({quote(DeliveryState.RETRYING.value)}, {quote(DeliveryState.CIRCUIT_OPEN.value)})"
        )
        scheduled = 0
        started = 0.0
        later: list[tuple[datetime, str]] = []
        in_flight = asyncio.Semaphore(WAKE_IN_FLIGHT)
        signals: set[asyncio.Task[None]] = set()

        async def signal(workflow_id: str) -> None:
            try:
                with contextlib.suppress(RPCError):  # It may have just finished.
                    await self._client.get_workflow_handle(workflow_id).signal("retry_now")
            finally:
                in_flight.release()

        async def wake(workflow_id: str) -> None:
            nonlocal scheduled
            delay = started + scheduled / self._wake_per_second - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await in_flight.acquire()
            task = asyncio.create_task(signal(workflow_id))
            signals.add(task)
            task.add_done_callback(signals.discard)
            scheduled += 1
            activity.heartbeat(scheduled)

        async for wf in self._client.list_workflows(query):
            if not started:
                # Let every worker's cached view catch up with the new phase first.
                await asyncio.sleep(self._settle_seconds)
                started = time.monotonic()
            due = wf.typed_search_attributes.get(sa.NEXT_ATTEMPT_AT)
            if due is not None and due < _now() + timedelta(seconds=SELF_WAKE_SECONDS):
                later.append((due, wf.id))
            else:
                await wake(wf.id)
        for due, workflow_id in sorted(later):
            # Woken by its own timer by now: this only catches one that was held again.
            wait = (due - _now()).total_seconds() + SELF_WAKE_SECONDS
            if wait > 0:
                await asyncio.sleep(wait)
            if await self._held_again(workflow_id, due):
                await wake(workflow_id)
        await asyncio.gather(*signals)
        return scheduled

    async def _held_again(self, workflow_id: str, due: datetime) -> bool:
        """Whether a delivery that was due at `due` now waits for a later moment.

        One still showing `due` has not finished the attempt its timer started (a busy
        worker can take longer than SELF_WAKE_SECONDS): a signal now would land during
        that send and make Temporal run it again, a duplicate request."""
        try:
            description = await self._client.get_workflow_handle(workflow_id).describe()
        except RPCError:
            return False
        attributes = description.typed_search_attributes
        next_at = attributes.get(sa.NEXT_ATTEMPT_AT)
        return (
            description.status is WorkflowExecutionStatus.RUNNING
            and attributes.get(sa.STATUS)
            in (DeliveryState.RETRYING.value, DeliveryState.CIRCUIT_OPEN.value)
            and next_at is not None
            and next_at > due
        )
