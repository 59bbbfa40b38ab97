"""What a delivery reports as it goes: metrics, a log line per attempt, its UI details.

`WebhookDelivery` calls it at three points (an attempt recorded, a hold by the circuit, the
run finished) and nothing else of it needs to know. All of it is replay-safe: the workflow's
metric meter records nothing while replaying, `workflow.logger` is silent then, and current
details are plain workflow state. Labels are fixed small sets (`webhooks.core.metrics`);
ids go only in log fields, never in a label.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import MetricCounter, MetricHistogramFloat

with workflow.unsafe.imports_passed_through():
    from webhooks.core import metrics
    from webhooks.core.metrics import status_class
    from webhooks.core.models import DeliveryRequest, DeliveryState, SendResult
    from webhooks.core.policy import Decision
    from webhooks.core.summaries import current_details, outcome_text


def counter(metric: metrics.Metric) -> MetricCounter:
    """A replay-safe counter from the current workflow's meter."""
    return workflow.metric_meter().create_counter(metric.name, metric.description, metric.unit)


def histogram(metric: metrics.Metric) -> MetricHistogramFloat:
    """A replay-safe histogram (seconds, buckets from `metrics.BUCKETS`)."""
    return workflow.metric_meter().create_histogram_float(
        metric.name, metric.description, metric.unit
    )


class DeliveryTelemetry:
    """One per delivery run, created in the workflow's `__init__`."""

    def __init__(self, request: DeliveryRequest) -> None:
        self._request = request
        self._held = False
        meter = workflow.metric_meter()
        self._attempts = meter.create_counter(
            metrics.ATTEMPTS.name, metrics.ATTEMPTS.description, metrics.ATTEMPTS.unit
        )
        self._finished = meter.create_counter(
            metrics.DELIVERIES_FINISHED.name,
            metrics.DELIVERIES_FINISHED.description,
            metrics.DELIVERIES_FINISHED.unit,
        )
        self._duration, self._latency, self._first = (
            meter.create_histogram_float(m.name, m.description, m.unit)
            for m in (
                metrics.ATTEMPT_DURATION,
                metrics.DELIVERY_LATENCY,
                metrics.FIRST_ATTEMPT_DELAY,
            )
        )

    def held(self) -> None:
        """The endpoint's circuit held the delivery back: its first attempt is late on
        purpose, so it is left out of the first-attempt delay (the latency SLO)."""
        self._held = True

    def attempt(self, number: int, result: SendResult, decision: Decision) -> None:
        outcome = decision.outcome.value
        kind = result.error_kind.value if result.error_kind else "none"
        self._attempts.add(
            1,
            {
                "outcome": outcome,
                "error_kind": kind,
                "status_class": status_class(result.status_code),
            },
        )
        self._duration.record(result.duration_ms / 1000, {"outcome": outcome})
        request = self._request
        if number == 1 and request.generation == 0 and not self._held:
            delay = (result.started_at - request.published_at).total_seconds()
            self._first.record(max(delay, 0.0))
        workflow.logger.info(
            "attempt %d: %s, %s",
            number,
            outcome_text(result),
            outcome,
            extra={
                "delivery_id": request.delivery_id,
                "endpoint_id": request.endpoint_id,
                "event_type": request.event_type,
                "attempt": number,
                "outcome": outcome,
                "status_code": result.status_code,
                "error_kind": kind,
                "duration_ms": result.duration_ms,
                "next_attempt_at": decision.next_attempt_at,
            },
        )

    def finished(
        self,
        state: DeliveryState,
        *,
        attempts: int,
        last: SendResult | None,
        reason: str | None,
    ) -> None:
        """The run ended delivered or dead-lettered: count it and time it from publish (to
        the 2xx's arrival, or to now for a dead letter)."""
        self._finished.add(1, {"state": state.value})
        end: datetime = workflow.now()
        if state is DeliveryState.DELIVERED and last is not None:
            end = last.started_at + timedelta(milliseconds=last.duration_ms)
        latency = max((end - self._request.published_at).total_seconds(), 0.0)
        self._latency.record(latency, {"outcome": state.value})
        workflow.logger.info(
            "delivery %s after %d attempt(s)%s",
            state.value,
            attempts,
            f": {reason}" if reason else "",
            extra={
                "delivery_id": self._request.delivery_id,
                "endpoint_id": self._request.endpoint_id,
                "event_type": self._request.event_type,
                "state": state.value,
                "attempt": attempts,
                "reason": reason,
                "duration_ms": round(latency * 1000, 3),
            },
        )

    @staticmethod
    def details(
        state: DeliveryState,
        *,
        attempts: int,
        last: SendResult | None,
        next_attempt_at: datetime | None,
        reason: str | None = None,
    ) -> None:
        """The delivery's current details in the Temporal UI."""
        workflow.set_current_details(
            current_details(
                state,
                attempts=attempts,
                last=last,
                next_attempt_at=next_attempt_at,
                now=workflow.now(),
                dead_letter_reason=reason,
            )
        )
