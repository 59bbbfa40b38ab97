"""Visibility queries for deliveries and dead letters, built from typed filters.

Pure, so the CLI, the console, the API and the bulk job's activity build the same query
from the same filter; every value is quoted (`webhooks.core.visibility.quote`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from webhooks.core import search_attributes as sa
from webhooks.core.models import DeadLetterReason, DeadLetterState, DeliveryState
from webhooks.core.names import DEAD_LETTER_WORKFLOW, DELIVERY_WORKFLOW
from webhooks.core.visibility import quote


def _time_clauses(since: datetime | None, until: datetime | None) -> list[str]:
    clauses = []
    if since:
        clauses.append(f"StartTime>={quote(since.isoformat())}")
    if until:
        clauses.append(f"StartTime<{quote(until.isoformat())}")
    return clauses


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead letters: all filters are ANDed; `state` None means every state."""

    endpoint_id: str | None = None
    event_type: str | None = None
    reason: DeadLetterReason | None = None
    since: datetime | None = None
    until: datetime | None = None
    state: DeadLetterState | None = DeadLetterState.OPEN
    task_queue: str | None = None
    """One deployment's dead letters, when several share a namespace."""

    def query(self) -> str:
        """The visibility query, usable as is with `temporal workflow list --query`."""
        clauses = [f"WorkflowType={quote(DEAD_LETTER_WORKFLOW)}"]
        if self.state is not None:
            clauses.append(f"{sa.STATUS.name}={quote(self.state.value)}")
        if self.endpoint_id:
            clauses.append(f"{sa.ENDPOINT_ID.name}={quote(self.endpoint_id)}")
        if self.event_type:
            clauses.append(f"{sa.EVENT_TYPE.name}={quote(self.event_type)}")
        if self.reason:
            clauses.append(f"{sa.DEAD_LETTER_REASON.name}={quote(self.reason.value)}")
        clauses += _time_clauses(self.since, self.until)
        if self.task_queue:
            clauses.append(f"TaskQueue={quote(self.task_queue)}")
        return " AND ".join(clauses)


@dataclass(frozen=True)
class DeliveryFilter:
    """Which deliveries (runs of `WebhookDelivery`), by their search attributes."""

    endpoint_id: str | None = None
    event_type: str | None = None
    state: DeliveryState | None = None
    since: datetime | None = None
    until: datetime | None = None

    def query(self) -> str:
        clauses = [f"WorkflowType={quote(DELIVERY_WORKFLOW)}"]
        if self.state is not None:
            clauses.append(f"{sa.STATUS.name}={quote(self.state.value)}")
        if self.endpoint_id:
            clauses.append(f"{sa.ENDPOINT_ID.name}={quote(self.endpoint_id)}")
        if self.event_type:
            clauses.append(f"{sa.EVENT_TYPE.name}={quote(self.event_type)}")
        clauses += _time_clauses(self.since, self.until)
        return " AND ".join(clauses)
