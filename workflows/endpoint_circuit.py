"""`EndpointCircuit`: one long-running workflow per endpoint that keeps failing.

It exists only while an endpoint has trouble: workers start it (signal-with-start) with
their first failure report, and it completes once the endpoint has been healthy for a
whole window, so healthy endpoints cost nothing. Workers aggregate their reports (at most
about one signal per second per worker).

It is the authority on its endpoint: it publishes its verdict (phase, next probe time) to
the registry, where every worker's gate reads it through the registry cache. It runs on
the control task queue, so a backlog of deliveries never slows it. Its I/O runs in the
background with unlimited retries: publishing, waking held deliveries (resumable, after
the new verdict has reached every worker) and operational events never block reports or
continue-as-new, and no failure of theirs can end the workflow or lose a DISABLED.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.circuit_view import CircuitActivities
    from webhooks.core import metrics, operational
    from webhooks.core import search_attributes as sa
    from webhooks.core.circuit import (
        Circuit,
        CircuitInput,
        CircuitPhase,
        CircuitSnapshot,
        OperatorRequest,
        OutcomeReport,
        PublishedCircuit,
    )
    from webhooks.core.ids import circuit_id
    from webhooks.core.models import Gate
    from webhooks.core.names import CIRCUIT_WORKFLOW
    from workflows.operational import emit
    from workflows.telemetry import counter

REGISTRY_PATCH = "circuit-verdict-in-registry"
"""`workflow.patched` name: circuits started before it replay (and run) the old loop,
which woke held deliveries inline; see `_run_before_registry`."""
CARRY_PATCH = "circuit-carries-its-verdict"
"""`workflow.patched` name: a run continued-as-new starts from the verdict its previous
run published (carried in the input). Before it, such a run took "nothing published in
this run" for "the registry holds nothing", so a close in the task that continued as new
was never published nor woken, and the circuit never completed."""
FOREVER = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2,
    maximum_interval=timedelta(seconds=30),
)
"""The circuit's own I/O is retried until it succeeds: it is idempotent, and giving up
would leave held deliveries waiting or a disable unpublished."""
REGISTRY_CALL = timedelta(seconds=10)
"""Start-to-close of the short activities (a registry read or write, a nudge): when the
worker running one is killed, the retry waits this long, and the wake waits for it."""
WAKE_HEARTBEAT = timedelta(seconds=10)
"""A wake heartbeats at least every second or so; when the worker running it is killed,
the retry resumes from its cursor this soon (it was 60 s: a kill held a recovered
endpoint's deliveries for up to a minute)."""
WAKE_ATTEMPT = timedelta(hours=1)
"""One attempt of a wake; a longer one resumes from its heartbeat's cursor."""


@workflow.defn(name=CIRCUIT_WORKFLOW)
class EndpointCircuit:
    @workflow.init
    def __init__(self, input: dict[str, Any] | None = None) -> None:
        self._input = _valid_input(input)
        snapshot = self._input.snapshot or CircuitSnapshot(endpoint_id=self._input.endpoint_id)
        self._circuit = Circuit(snapshot, self._input.config)
        self._changed = False
        self._phase = snapshot.phase
        self._by_operator = False
        """Whether the pending change came from the `disable` signal (not automatic)."""
        self._published: PublishedCircuit | None = None
        self._published_known = True
        """Whether `_published` is what the registry holds (None: no verdict row)."""
        self._nudging = False
        self._tasks: set[asyncio.Task[object]] = set()
        """Nudges and operational events in flight (a reference keeps each alive)."""

    @workflow.run
    async def run(self, input: dict[str, Any] | None = None) -> CircuitSnapshot:
        if not workflow.patched(REGISTRY_PATCH):
            return await self._run_before_registry()
        if self._input.snapshot is None:
            await self._load()
        elif workflow.patched(CARRY_PATCH):
            # Unknown (an input from before the patch): publish once to be sure.
            self._published = self._input.published
            self._published_known = self._published is not None
        self._publish()
        background = [
            asyncio.create_task(self._publish_forever()),
            asyncio.create_task(self._wake_forever()),
        ]
        while True:
            try:
                await workflow.wait_condition(lambda: self._changed, timeout=self._next_wake())
            except TimeoutError:
                pass
            self._changed = False
            self._circuit.tick(workflow.now())
            self._on_phase_change()
            self._nudge_if_due()
            if self._healthy_and_idle() and self._settled():
                await workflow.wait_condition(workflow.all_handlers_finished)
                if not self._changed and self._settled():
                    for task in background:
                        task.cancel()
                    return self._circuit.s
            if self._history_is_long():
                await workflow.wait_condition(workflow.all_handlers_finished)
                # Moves a circuit started on the delivery queue to the control queue.
                workflow.continue_as_new(
                    self._input.model_copy(
                        update={"snapshot": self._circuit.s, "published": self._published}
                    ),
                    task_queue=self._input.control_task_queue,
                )

    @workflow.signal(name="report")
    def report(self, report: OutcomeReport) -> None:
        self._circuit.s.signals_received += 1
        self._circuit.record(report, workflow.now())
        self._changed = True

    @workflow.update(name="acquire_probe")
    def acquire_probe(self) -> Gate:
        """Grant the one probe of a half-open circuit. Only circuits started before the
        registry lease (`REGISTRY_PATCH`) are asked; kept so that their histories replay."""
        gate = self._circuit.acquire_probe(workflow.now())
        self._changed = True
        return gate

    @workflow.signal(name="reset")
    def reset(self, request: OperatorRequest | None = None) -> None:
        self._operator("reset", request, self._circuit.reset)

    @workflow.signal(name="disable")
    def disable(self, request: OperatorRequest | None = None) -> None:
        reason = (request.reason if request else "") or "disabled by an operator"
        self._by_operator = True
        self._operator("disable", request, lambda: self._circuit.disable(reason))

    @workflow.signal(name="enable")
    def enable(self, request: OperatorRequest | None = None) -> None:
        self._operator("enable", request, self._circuit.reset)

    @workflow.query(name="state")
    def state(self) -> CircuitSnapshot:
        return self._circuit.s

    def _operator(self, what: str, request: OperatorRequest | None, action: object) -> None:
        self._circuit.s.signals_received += 1
        workflow.logger.warning(
            "circuit %s by %s", what, request.requested_by if request else "unknown"
        )
        assert callable(action)
        action()
        self._changed = True

    # -- the circuit's I/O, in the background ---------------------------------------------

    async def _load(self) -> None:
        """Start from the registry's verdict: a circuit that was lost (terminated, or
        completed while an operator's disable was still on record) keeps its DISABLED."""
        verdict = await workflow.execute_activity_method(
            CircuitActivities.load_circuit,
            self._input.endpoint_id,
            start_to_close_timeout=REGISTRY_CALL,
            retry_policy=FOREVER,
            summary="load the published verdict",
        )
        self._published = verdict
        if verdict is None or verdict.phase is CircuitPhase.CLOSED:
            return
        s = self._circuit.s
        if verdict.phase is CircuitPhase.DISABLED:
            self._circuit.disable(verdict.reason or "disabled")
        else:
            s.phase, s.next_probe_at = CircuitPhase.OPEN, verdict.next_probe_at
            s.trips, s.opened_at = max(verdict.trips, 1), verdict.opened_at
        self._phase = s.phase

    def _verdict(self) -> PublishedCircuit:
        return PublishedCircuit.of(self._circuit.s, workflow.now())

    def _published_already(self) -> bool:
        """Whether the registry holds this circuit's verdict (an endpoint without a row is
        closed: nothing to write until it trips)."""
        if not self._published_known:
            return False
        verdict = self._verdict()
        if self._published is None:
            return verdict.same_verdict(
                PublishedCircuit.of(
                    CircuitSnapshot(endpoint_id=verdict.endpoint_id), verdict.changed_at
                )
            )
        return verdict.same_verdict(self._published)

    async def _publish_forever(self) -> None:
        """Keep the registry's verdict equal to this circuit's phase (newest wins)."""
        while True:
            await workflow.wait_condition(lambda: not self._published_already())
            verdict = self._verdict()
            await workflow.execute_activity_method(
                CircuitActivities.publish_circuit,
                verdict,
                start_to_close_timeout=REGISTRY_CALL,
                retry_policy=FOREVER,
                summary=f"publish {verdict.phase.value}",
            )
            self._published, self._published_known = verdict, True
            self._changed = True

    async def _wake_forever(self) -> None:
        """After a close or a disable has reached every worker, wake the held deliveries:
        to the endpoint when it recovered, to the dead-letter queue when it was disabled."""
        s, config = self._circuit.s, self._circuit.config
        while True:
            await workflow.wait_condition(
                lambda: (
                    s.wake_pending is not None
                    and self._published is not None
                    and self._published.phase is s.wake_pending
                )
            )
            wake = s.wake_pending
            await workflow.sleep(timedelta(seconds=config.settle_seconds), summary="settle")
            if s.wake_pending is not wake or s.phase is not wake:
                continue  # Changed again meanwhile: that change decides.
            await workflow.execute_activity_method(
                CircuitActivities.wake_deliveries,
                self._input.endpoint_id,
                start_to_close_timeout=WAKE_ATTEMPT,
                heartbeat_timeout=WAKE_HEARTBEAT,
                retry_policy=FOREVER,
                summary=f"wake held deliveries ({wake.value})",
            )
            if s.wake_pending is wake:
                s.wake_pending = None
                self._changed = True

    def _nudge_if_due(self) -> None:
        """Half-open: wake one held delivery to take the probe (once per lease period), so
        probing costs one delivery per cooldown however many wait."""
        s, config, now = self._circuit.s, self._circuit.config, workflow.now()
        if s.phase is not CircuitPhase.HALF_OPEN or self._nudging:
            return
        if s.nudged_at and now - s.nudged_at < timedelta(seconds=config.probe_lease_seconds):
            return
        s.nudged_at = now
        self._nudging = True
        self._spawn(self._nudge())

    async def _nudge(self) -> None:
        try:
            await workflow.execute_activity_method(
                CircuitActivities.nudge_probe,
                self._input.endpoint_id,
                start_to_close_timeout=REGISTRY_CALL,
                schedule_to_close_timeout=timedelta(seconds=self._circuit.config.cooldown_seconds),
                retry_policy=FOREVER,
                summary="wake one held delivery for the probe",
            )
        except ActivityError as err:
            # The next lease period nudges again; a new delivery may take the probe too.
            workflow.logger.warning("probe nudge failed: %s", err.cause or err)
        finally:
            self._nudging = False

    def _spawn(self, work: Coroutine[Any, Any, object]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _settled(self) -> bool:
        s = self._circuit.s
        return s.wake_pending is None and not self._nudging and self._published_already()

    # -- decisions ----------------------------------------------------------------------

    def _phase_changed(self) -> tuple[CircuitPhase, CircuitPhase] | None:
        """(old, new) if the phase changed since last asked, shown and counted; else None."""
        old, new = self._phase, self._circuit.s.phase
        if old == new:
            return None
        self._phase = new
        self._publish()
        workflow.logger.warning(
            "endpoint %s circuit %s -> %s", self._input.endpoint_id, old.value, new.value
        )
        counter(metrics.CIRCUIT_TRANSITIONS).add(1, {"to": new.value})
        return old, new

    def _on_phase_change(self) -> None:
        changed = self._phase_changed()
        if changed is None:
            return
        old, new = changed
        event = self._event(old)
        if event is not None:
            self._spawn(emit(event))
        self._by_operator = False
        if new is not CircuitPhase.HALF_OPEN:
            # The next half-open spell nudges a probe at once, whatever the last one did.
            self._circuit.s.nudged_at = None
        if new in (CircuitPhase.CLOSED, CircuitPhase.DISABLED):
            self._circuit.s.wake_pending = new
        elif self._circuit.s.wake_pending is not None and new is CircuitPhase.OPEN:
            self._circuit.s.wake_pending = None  # Tripped again: nobody to wake.

    def _event(self, old: CircuitPhase) -> operational.OperationalEvent | None:
        info = workflow.info()
        return operational.circuit_event(
            old,
            self._circuit.s,
            workflow.now(),
            # Unique per change and the same on replay: the run and where it is.
            event_id=f"{info.workflow_id}.{info.run_id}.{info.get_current_history_length()}",
            by_operator=self._by_operator,
        )

    def _next_wake(self) -> timedelta | None:
        """The next moment time alone changes something: a cooldown ends, disable, or idle."""
        s, config, now = self._circuit.s, self._circuit.config, workflow.now()
        moments = []
        if s.phase is CircuitPhase.OPEN and s.next_probe_at:
            moments.append(s.next_probe_at)
        if s.phase is CircuitPhase.HALF_OPEN and s.nudged_at:
            moments.append(s.nudged_at + timedelta(seconds=config.probe_lease_seconds))
        if s.phase is not CircuitPhase.DISABLED and s.failing_since:
            moments.append(s.failing_since + timedelta(seconds=config.disable_after_seconds))
        if s.buckets:
            moments.append(s.buckets[-1].start + timedelta(seconds=config.window_seconds + 10))
        if not moments:
            return None
        return max(min(moments) - now, timedelta(seconds=1))

    def _healthy_and_idle(self) -> bool:
        s = self._circuit.s
        return s.phase is CircuitPhase.CLOSED and not s.buckets and s.failing_since is None

    def _history_is_long(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() > self._input.config.max_history_events
        )

    def _publish(self) -> None:
        """The phase as a search attribute and in the Temporal UI's current details."""
        s = self._circuit.s
        workflow.upsert_search_attributes(
            [sa.ENDPOINT_ID.value_set(s.endpoint_id), sa.STATUS.value_set(s.phase.value)]
        )
        workflow.set_current_details(
            f"circuit **{s.phase.value}**"
            + (
                f", next probe at {s.next_probe_at:%Y-%m-%d %H:%M:%S} UTC"
                if s.next_probe_at
                else ""
            )
            + (f", disabled: {s.disabled_reason}" if s.disabled_reason else "")
        )

    # -- circuits started before REGISTRY_PATCH ---------------------------------------------
    # Delete once no circuit started before 2026-12-01 runs (they move to the new loop at
    # their next continue-as-new).

    async def _run_before_registry(self) -> CircuitSnapshot:
        input = self._input
        self._publish()
        while True:
            try:
                await workflow.wait_condition(lambda: self._changed, timeout=self._next_wake())
            except TimeoutError:
                pass
            self._changed = False
            self._circuit.tick(workflow.now())
            await self._on_phase_change_before_registry()
            if self._healthy_and_idle():
                await workflow.wait_condition(workflow.all_handlers_finished)
                if not self._changed:
                    return self._circuit.s
            if self._history_is_long():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    CircuitInput(
                        endpoint_id=input.endpoint_id, config=input.config, snapshot=self._circuit.s
                    )
                )

    async def _on_phase_change_before_registry(self) -> None:
        changed = self._phase_changed()
        if changed is None:
            return
        old, new = changed
        if workflow.patched(operational.PATCH):
            event = self._event(old)
            if event is not None:
                await emit(event)
        self._by_operator = False
        if new in (CircuitPhase.CLOSED, CircuitPhase.DISABLED):
            await workflow.execute_activity_method(
                CircuitActivities.wake_deliveries,
                self._input.endpoint_id,
                start_to_close_timeout=timedelta(minutes=10),
                retry_policy=RetryPolicy(maximum_attempts=3),
            )


def _valid_input(raw: dict[str, Any] | None) -> CircuitInput:
    """The input, or (if it cannot be used, or there is none) a fresh circuit for the
    workflow's endpoint: a bad input must not fail the one workflow that gates an endpoint."""
    try:
        return CircuitInput.model_validate(raw)
    except ValidationError as err:
        endpoint_id = workflow.info().workflow_id.removeprefix(circuit_id(""))
        workflow.logger.error("circuit input unusable (%s); starting fresh", err)
        return CircuitInput(endpoint_id=endpoint_id)
