"""Emitting an operational event from a workflow: one activity, never a reason to fail.

The worker's `publish_operational_event` activity does the publishing (and knows whether
there is an operations account at all); a workflow only names the event. If the activity
keeps failing (the registry down for a quarter of an hour), the event is logged as lost and
the workflow goes on: a dead letter or a circuit must never wait on StreamPay's own inbox.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.operational import OperationalEvents
    from webhooks.core.operational import OperationalConfig, OperationalEvent

RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=2))
GIVE_UP_AFTER = timedelta(minutes=15)
"""Retries for a registry or Temporal hiccup, not through an outage."""


async def emit(event: OperationalEvent) -> OperationalConfig:
    """Publish `event` to the operations endpoints; the worker's config, or disabled."""
    try:
        return await workflow.execute_activity_method(
            OperationalEvents.publish_operational_event,
            event,
            start_to_close_timeout=timedelta(seconds=30),
            schedule_to_close_timeout=GIVE_UP_AFTER,
            retry_policy=RETRY,
            summary=f"operational event {event.event_type}",
        )
    except ActivityError as err:
        workflow.logger.warning(
            "operational event %s not published: %s",
            event.event_type,
            err.cause or err,
            extra={"endpoint_id": event.endpoint_id},
        )
        return OperationalConfig(enabled=False)
