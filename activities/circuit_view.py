"""The worker's side of the endpoint circuits: the gate in front of every send, the
aggregated reports that keep the `EndpointCircuit` workflows informed, and the activities
those workflows run.

The circuit workflow is the authority: it publishes its verdict (phase, next probe time)
to the registry, and every gate reads it through the registry cache, the same short TTL
as the endpoint's URL. A worker's local copy of the state machine (fed by its own sends)
only bridges the seconds before the circuit has heard: it trips at once on this worker's
failures, so a dead endpoint is cut off after a handful of requests, and it yields to the
circuit within LOCAL_TRUST_SECONDS.

Cost model, which the tests count:
- an endpoint that has not failed recently costs a cached registry read per TTL; nothing
  is sent to Temporal (no signal, no query, no history event);
- a failing endpoint gets at most one `report` signal per flush interval from this worker;
- while its circuit is open, held deliveries sleep (HOLD_SECONDS at most, a safety net):
  the circuit wakes one for each probe (one lease in the registry, whoever asks first)
  and all of them, paced, once it closes or is disabled. No queries, no updates.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel
from temporalio import activity
from temporalio.client import Client, RPCError
from temporalio.exceptions import ApplicationError

from activities.endpoint_cache import EndpointCache
from webhooks.core import metrics
from webhooks.core import search_attributes as sa
from webhooks.core.circuit import (
    HOLD_SECONDS,
    LOCAL_TRUST_SECONDS,
    Circuit,
    CircuitConfig,
    CircuitInput,
    CircuitPhase,
    CircuitSnapshot,
    OutcomeReport,
    PublishedCircuit,
    Signal,
    gate_of,
)
from webhooks.core.ids import circuit_id
from webhooks.core.models import DeliveryState, Gate
from webhooks.core.names import CIRCUIT_WORKFLOW, DELIVERY_WORKFLOW
from webhooks.core.visibility import quote
from webhooks.registry.errors import RegistryUnavailableError
from webhooks.registry.service import EndpointRegistry

log = logging.getLogger(__name__)

WAKE_PER_SECOND = 200.0
"""How fast `wake_deliveries` releases a recovered endpoint's queue: about what one worker
delivers at most, so the drain runs at the healthy rate; if the endpoint fails again, the
circuit trips again after a handful of requests and holds the rest."""
WAKE_IN_FLIGHT = 50
"""Signals in flight at once."""
WAKE_BACKLOG = 100
"""Woken deliveries the workers may have waiting at once (see `_Backlog`)."""
BACKLOG_PATIENCE_SECONDS = 30.0
WAKE_PAGE = 200
SELF_WAKE_SECONDS = 5.0
"""A delivery due this soon is left to its own timer: a `retry_now` landing while its send
completes would fail that workflow task, and the POST would run again (a duplicate)."""
UNREADABLE_PROBE_HOLD_SECONDS = 10.0
"""A due circuit whose probe lease cannot be taken (registry down) holds this long."""


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Endpoint:
    circuit: Circuit
    """This worker's local copy, fed by its own sends."""
    pending: OutcomeReport = field(default_factory=OutcomeReport)
    tripped_at: datetime | None = None
    """When the local copy left closed (None: it is closed)."""
    last_failure: float = 0.0


class CircuitView:
    """Per-worker gate and report aggregator for the endpoint circuits."""

    def __init__(
        self,
        client: Client,
        *,
        task_queue: str,
        config: CircuitConfig,
        endpoints: EndpointCache,
        registry: EndpointRegistry,
        flush_interval: float = 1.0,
    ) -> None:
        self._client = client
        self._task_queue = task_queue
        """Where circuits run: the control task queue."""
        self._config = config
        self._cache = endpoints
        self._registry = registry
        self._flush_interval = flush_interval
        self._endpoints: dict[str, _Endpoint] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._reports: set[asyncio.Task[None]] = set()
        self.signals_sent = 0
        self.probes_taken = 0

    async def __aenter__(self) -> CircuitView:
        self._flusher = asyncio.create_task(self._flush_forever())
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._flusher is not None
        self._flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._flusher
        await asyncio.gather(*self._reports, return_exceptions=True)
        await self.flush()

    # -- gating ---------------------------------------------------------------------------

    async def gate(self, endpoint_id: str) -> Gate:
        """May a delivery to this endpoint send now? Never raises.

        When the verdict cannot be read (the registry down past its stale window), the
        delivery goes ahead under the local copy alone: fail open, bounded by the local
        trip (a few requests per LOCAL_TRUST_SECONDS per worker to a dead endpoint)."""
        now = _now()
        try:
            published = await self._cache.circuit(endpoint_id)
        except RegistryUnavailableError:
            published = None
        entry = self._endpoints.get(endpoint_id)
        gate = gate_of(published, local_tripped_at=self._local_trip(entry, published, now), now=now)
        if not gate.probe:
            return gate
        try:
            taken = await self._registry.take_probe(endpoint_id, self._config.probe_lease_seconds)
        except RegistryUnavailableError:
            return Gate(
                allow=False, retry_at=now + timedelta(seconds=UNREADABLE_PROBE_HOLD_SECONDS)
            )
        if taken:
            self.probes_taken += 1
            return Gate(allow=True, probe=True)
        return Gate(allow=False, retry_at=gate.retry_at)

    def _local_trip(
        self, entry: _Endpoint | None, published: PublishedCircuit | None, now: datetime
    ) -> datetime | None:
        """This worker's own trip while it still counts; once the circuit has spoken since,
        or had LOCAL_TRUST_SECONDS to, the circuit wins and the local copy starts afresh."""
        if entry is None or entry.tripped_at is None:
            return None
        spoken = published is not None and published.changed_at >= entry.tripped_at
        if spoken or now >= entry.tripped_at + timedelta(seconds=LOCAL_TRUST_SECONDS):
            entry.circuit = self._fresh(entry.circuit.s.endpoint_id)
            entry.tripped_at = None
            return None
        return entry.tripped_at

    def _fresh(self, endpoint_id: str) -> Circuit:
        return Circuit(CircuitSnapshot(endpoint_id=endpoint_id), self._config)

    # -- reporting ------------------------------------------------------------------------

    def record(self, endpoint_id: str, signal: Signal, *, probe: bool = False) -> None:
        """Count one attempt's outcome; free for endpoints that have not failed recently."""
        entry = self._endpoints.get(endpoint_id)
        if entry is None:
            if signal in (Signal.SUCCESS, Signal.NEUTRAL) and not probe:
                return
            entry = self._endpoints[endpoint_id] = _Endpoint(self._fresh(endpoint_id))
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
        was_closed = entry.circuit.s.phase is CircuitPhase.CLOSED
        entry.circuit.record(single, _now())
        tripped = was_closed and entry.circuit.s.phase is not CircuitPhase.CLOSED
        if tripped:
            entry.tripped_at = _now()
        if probe:
            p.probe_succeeded = single.probe_succeeded
        if tripped or probe:
            # A trip or a probe result changes the circuit for everyone: report it now.
            task = asyncio.get_running_loop().create_task(self._flush_one(endpoint_id, entry))
            self._reports.add(task)
            task.add_done_callback(self._reports.discard)

    async def flush(self) -> None:
        for endpoint_id, entry in list(self._endpoints.items()):
            await self._flush_one(endpoint_id, entry)
            idle = time.monotonic() - entry.last_failure > self._config.window_seconds
            if idle and entry.pending.empty and entry.tripped_at is None:
                del self._endpoints[endpoint_id]  # Healthy again: back to zero cost.

    async def _flush_one(self, endpoint_id: str, entry: _Endpoint) -> None:
        report, entry.pending = entry.pending, OutcomeReport()
        if report.empty:
            return
        try:
            await self._client.start_workflow(
                CIRCUIT_WORKFLOW,
                CircuitInput(
                    endpoint_id=endpoint_id,
                    config=self._config,
                    control_task_queue=self._task_queue,
                ),
                id=circuit_id(endpoint_id),
                task_queue=self._task_queue,
                start_signal="report",
                start_signal_args=[report],
            )
            self.signals_sent += 1
        except RPCError as err:
            log.warning("circuit report for %s failed: %s", endpoint_id, err.message)

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self._flush_interval)
            try:
                await self.flush()
            except Exception:
                log.exception("circuit flush failed")


class WakeProgress(BaseModel):
    """A wake's cursor, kept in its heartbeat so that a retry resumes where it stopped."""

    started_at: datetime
    sweep: int = 0
    page_token: str | None = None
    """Visibility's next-page token, base64 (tokens are bytes)."""
    page_signalled: list[str] = []
    """Deliveries of the page at `page_token` already signalled: a wake stopped by a
    worker's shutdown resumes there without signalling them twice (a second `retry_now`
    landing during a send that ends the delivery makes Temporal run the POST again)."""
    woken: int = 0


class CircuitActivities:
    """What the `EndpointCircuit` workflow needs from the outside world. Every failure is
    logged and counted (`webhooks_circuit_io_failures_total{activity}`) and retried by
    the workflow's retry policy."""

    def __init__(
        self,
        client: Client,
        registry: EndpointRegistry,
        *,
        wake_per_second: float = WAKE_PER_SECOND,
    ) -> None:
        self._client = client
        self._registry = registry
        self._wake_per_second = wake_per_second

    @activity.defn(name="load_circuit")
    async def load_circuit(self, endpoint_id: str) -> PublishedCircuit | None:
        async with _counted("load_circuit"):
            return await self._registry.circuit(endpoint_id)

    @activity.defn(name="publish_circuit")
    async def publish_circuit(self, verdict: PublishedCircuit) -> bool:
        async with _counted("publish_circuit"):
            return await self._registry.publish_circuit(verdict)

    @activity.defn(name="nudge_probe")
    async def nudge_probe(self, endpoint_id: str) -> bool:
        """Wake one held delivery so that it takes the probe; False: nobody is held."""
        async with _counted("nudge_probe"):
            query = _held_query(
                endpoint_id,
                (DeliveryState.CIRCUIT_OPEN,),
                waking_after=_now() + timedelta(seconds=SELF_WAKE_SECONDS),
            )
            async for wf in self._client.list_workflows(query, limit=1, page_size=1):
                with contextlib.suppress(RPCError):  # It may have just finished.
                    await self._client.get_workflow_handle(wf.id).signal("retry_now")
                return True
            return False

    @activity.defn(name="wake_deliveries")
    async def wake_deliveries(self, endpoint_id: str) -> int:
        """Signal `retry_now` to every waiting delivery of the endpoint, paced; resumable.

        Two sweeps: the first wakes every delivery in backoff or held; the second, a few
        seconds later, those held again meanwhile by a worker that had not yet seen the
        change. Deliveries due within SELF_WAKE_SECONDS are left to their own timers."""
        async with _counted("wake_deliveries"):
            details = activity.info().heartbeat_details
            progress = (
                WakeProgress.model_validate(details[0])
                if details
                else WakeProgress(started_at=_now())
            )
            while progress.sweep < 2:
                if progress.sweep == 0:
                    waking_after = _now() + timedelta(seconds=SELF_WAKE_SECONDS)
                    query = _held_query(
                        endpoint_id,
                        (DeliveryState.RETRYING, DeliveryState.CIRCUIT_OPEN),
                        waking_after=waking_after,
                    )
                else:
                    if progress.page_token is None:
                        await _pause(2 * SELF_WAKE_SECONDS, progress)
                    # Only those held since this wake began: a delivery woken by the first
                    # sweep still shows its old hold while it sends, and a second signal
                    # landing during that send would make Temporal run the POST again.
                    waking_after = progress.started_at + timedelta(seconds=HOLD_SECONDS)
                    query = _held_query(
                        endpoint_id, (DeliveryState.CIRCUIT_OPEN,), waking_after=waking_after
                    )
                held = _held_query(
                    endpoint_id, (DeliveryState.CIRCUIT_OPEN,), waking_after=waking_after
                )
                await self._sweep(query, held, progress)
                progress = progress.model_copy(
                    update={"sweep": progress.sweep + 1, "page_token": None}
                )
                activity.heartbeat(progress.model_dump(mode="json"))
            return progress.woken

    async def _sweep(self, query: str, held_query: str, progress: WakeProgress) -> None:
        pages = self._client.list_workflows(
            query,
            page_size=WAKE_PAGE,
            next_page_token=base64.b64decode(progress.page_token) if progress.page_token else None,
        )
        in_flight = asyncio.Semaphore(WAKE_IN_FLIGHT)
        signals: set[asyncio.Task[None]] = set()
        already = set(progress.page_signalled)
        started, paced = time.monotonic(), 0
        backlog = _Backlog(self._client, held_query)
        await backlog.start()

        async def signal(workflow_id: str) -> None:
            try:
                with contextlib.suppress(RPCError):  # It may have just finished.
                    await self._client.get_workflow_handle(workflow_id).signal("retry_now")
            finally:
                in_flight.release()

        while True:
            await pages.fetch_next_page()
            for wf in pages.current_page or ():
                if wf.id in already:
                    continue
                if activity.is_worker_shutdown():
                    await asyncio.gather(*signals)
                    progress.woken += paced
                    activity.heartbeat(progress.model_dump(mode="json"))
                    raise ApplicationError(
                        "worker shutting down: the wake resumes from its cursor on another worker",
                        type="WorkerShutdown",
                    )
                # On a schedule (not one after another): a slow server does not slow it.
                delay = started + paced / self._wake_per_second - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if wf.typed_search_attributes.get(sa.STATUS) == DeliveryState.CIRCUIT_OPEN.value:
                    # No faster than the workers get through them: a woken delivery whose
                    # workflow task times out in a queue runs its send again.
                    await backlog.woke_one(progress)
                await in_flight.acquire()
                task = asyncio.create_task(signal(wf.id))
                signals.add(task)
                task.add_done_callback(signals.discard)
                progress.page_signalled.append(wf.id)
                paced += 1
            await asyncio.gather(*signals)
            progress.woken += paced
            paced, started = 0, time.monotonic()
            token = pages.next_page_token
            progress.page_token = base64.b64encode(token).decode() if token else None
            progress.page_signalled, already = [], set()
            activity.heartbeat(progress.model_dump(mode="json"))
            if progress.page_token is None:
                return


async def _pause(seconds: float, progress: WakeProgress) -> None:
    """Sleep, heartbeating every second: a wake's heartbeat timeout is short (WAKE_HEARTBEAT
    in workflows/endpoint_circuit.py) so that a killed worker's wake resumes soon."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        activity.heartbeat(progress.model_dump(mode="json"))
        await asyncio.sleep(min(1.0, left))


class _Backlog:
    """How many woken deliveries the workers have not got through yet: those woken, less
    how far the count of held ones has fallen. The wake keeps it under WAKE_BACKLOG, so
    it drains at the workers' pace (at most `wake_per_second`); it never waits longer
    than BACKLOG_PATIENCE_SECONDS for one step (deliveries held again count as not yet
    through)."""

    def __init__(self, client: Client, held_query: str) -> None:
        self._client = client
        self._query = held_query
        self._held_at_start = 0
        self._woken = 0
        self._through = 0

    async def start(self) -> None:
        self._held_at_start = await self._held()

    async def woke_one(self, progress: WakeProgress) -> None:
        deadline = time.monotonic() + BACKLOG_PATIENCE_SECONDS
        while self._woken - self._through >= WAKE_BACKLOG and time.monotonic() < deadline:
            self._through = max(self._through, self._held_at_start - await self._held())
            if self._woken - self._through >= WAKE_BACKLOG:
                await asyncio.sleep(0.5)
                activity.heartbeat(progress.model_dump(mode="json"))
        self._woken += 1

    async def _held(self) -> int:
        return (await self._client.count_workflows(self._query)).count


def _held_query(
    endpoint_id: str, states: tuple[DeliveryState, ...], *, waking_after: datetime
) -> str:
    """Running deliveries of the endpoint in one of `states`, due after `waking_after`."""
    after = waking_after.strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        f"WorkflowType={quote(DELIVERY_WORKFLOW)} AND ExecutionStatus='Running' AND "
        f"{sa.ENDPOINT_ID.name}={quote(endpoint_id)} AND {sa.STATUS.name} IN "
        f"({', '.join(quote(s.value) for s in states)}) AND "
        f"{sa.NEXT_ATTEMPT_AT.name} > {quote(after)}"
    )


@contextlib.asynccontextmanager
async def _counted(what: str) -> AsyncIterator[None]:
    try:
        yield
    except Exception as err:
        activity.logger.warning("circuit %s failed (retried): %s", what, err)
        activity.metric_meter().create_counter(
            metrics.CIRCUIT_IO_FAILURES.name, metrics.CIRCUIT_IO_FAILURES.description
        ).add(1, {"activity": what})
        raise
