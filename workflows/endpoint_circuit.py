"""`EndpointCircuit`: one long-running workflow per endpoint that keeps failing.

It exists only while an endpoint has trouble: workers start it (signal-with-start) with
their first failure report, and it completes once the endpoint has been healthy for a
whole window, so healthy endpoints cost nothing. Workers aggregate their reports (at most
about one signal per second per worker) and read the state through a cached query, so
this workflow sees a handful of signals however many deliveries fail.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import ValidationError
from temporalio import workflow
from temporalio.common import RetryPolicy

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
    )
    from webhooks.core.models import Gate
    from webhooks.core.names import CIRCUIT_WORKFLOW
    from workflows.operational import emit
    from workflows.telemetry import counter


# A malformed input (say, from a non-Python publisher) fails the workflow with the
# validation error instead of failing its workflow task forever.
@workflow.defn(name=CIRCUIT_WORKFLOW, failure_exception_types=[ValidationError])
class EndpointCircuit:
    @workflow.init
    def __init__(self, input: CircuitInput) -> None:
        snapshot = input.snapshot or CircuitSnapshot(endpoint_id=input.endpoint_id)
        self._circuit = Circuit(snapshot, input.config)
        self._input = input
        self._changed = False
        self._phase = snapshot.phase
        self._by_operator = False
        """Whether the pending change came from the `disable` signal (not automatic)."""

    @workflow.run
    async def run(self, input: CircuitInput) -> CircuitSnapshot:
        self._publish()
        while True:
            try:
                await workflow.wait_condition(lambda: self._changed, timeout=self._next_wake())
            except TimeoutError:
                pass
            self._changed = False
            self._circuit.tick(workflow.now())
            await self._on_phase_change()
            if self._healthy_and_idle():
                await workflow.wait_condition(workflow.all_handlers_finished)
                if not self._changed:
                    return self._circuit.s
            if (
                workflow.info().is_continue_as_new_suggested()
                or workflow.info().get_current_history_length() > input.config.max_history_events
            ):
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    CircuitInput(
                        endpoint_id=input.endpoint_id,
                        config=input.config,
                        snapshot=self._circuit.s,
                    )
                )

    @workflow.signal(name="report")
    def report(self, report: OutcomeReport) -> None:
        self._circuit.s.signals_received += 1
        self._circuit.record(report, workflow.now())
        self._changed = True

    @workflow.update(name="acquire_probe")
    def acquire_probe(self) -> Gate:
        """Grant the one probe of a half-open circuit (updates, so the answer is atomic)."""
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

    def _next_wake(self) -> timedelta | None:
        """The next moment time alone changes something: a cooldown ends, disable, or idle."""
        s, config, now = self._circuit.s, self._circuit.config, workflow.now()
        moments = []
        if s.phase is CircuitPhase.OPEN and s.next_probe_at:
            moments.append(s.next_probe_at)
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

    def _publish(self) -> None:
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

    async def _on_phase_change(self) -> None:
        old, new = self._phase, self._circuit.s.phase
        if old == new:
            return
        self._phase = new
        self._publish()
        workflow.logger.warning(
            "endpoint %s circuit %s -> %s", self._input.endpoint_id, old.value, new.value
        )
        counter(metrics.CIRCUIT_TRANSITIONS).add(1, {"to": new.value})
        if workflow.patched(operational.PATCH):
            info = workflow.info()
            event = operational.circuit_event(
                old,
                self._circuit.s,
                workflow.now(),
                # Unique per change and the same on replay: the run and where it is.
                event_id=f"{info.workflow_id}.{info.run_id}.{info.get_current_history_length()}",
                by_operator=self._by_operator,
            )
            if event is not None:
                await emit(event)
        self._by_operator = False
        if new in (CircuitPhase.CLOSED, CircuitPhase.DISABLED):
            # Waiting deliveries go now: to the endpoint when it recovered, to the
            # dead-letter queue when it was disabled. Paced by the activity.
            await workflow.execute_activity_method(
                CircuitActivities.wake_deliveries,
                self._input.endpoint_id,
                start_to_close_timeout=timedelta(minutes=10),
                retry_policy=RetryPolicy(maximum_attempts=3),
            )
