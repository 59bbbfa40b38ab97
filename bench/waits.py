"""Whether the circuit held deliveries it should not have: its promise (docs/circuit.md) is
that after any fault, a delivery to an endpoint whose circuit is closed waits no longer
than its own backoff plus about 10 s.

Two figures, read from each delivery's history and its endpoint's circuit history:

- **Holds while closed** (judged). A hold is a delivery's `circuit open: ...` timer, from
  its start to the moment it was lifted (the circuit's wake signal or the timer firing).
  What counts is the part of it while the endpoint's circuit was closed, outside the fault
  windows: a delivery held on a stale local copy, or woken late after the circuit closed.
- **Waits beyond the schedule** (reported). From when the schedule made each attempt due
  (the publish, then the previous attempt's `next_attempt_at`) to when it started, less the
  fault windows and the times the circuit was open. This adds the workers' queue: a campaign
  publishing faster than two cores deliver shows its backlog here, not as holds. The longest
  workflow-task queue time (scheduled to started) is reported beside it.

A fault window is the fault itself plus `RECOVERY_SECONDS`, one workflow-task timeout for
the tasks a killed process held.

A circuit counts as not yet closed until its wake begins: a close is published to the
registry and left to settle, so every worker's gate has seen it before the held deliveries
retry (otherwise they would be held again). That takes at most `CLOSE_PROTOCOL_SECONDS`
(the registry call's timeout plus the settle time); what the wake takes after that, its
pacing through the workers' backlog included, counts.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client
from temporalio.service import RPCError

from webhooks.core import search_attributes as sa
from webhooks.core.circuit import CircuitConfig, CircuitPhase
from webhooks.core.ids import circuit_id
from webhooks.core.models import Attempt
from webhooks.core.names import CIRCUIT_WORKFLOW
from webhooks.core.summaries import HELD_PREFIX
from webhooks.core.visibility import quote
from workflows.endpoint_circuit import REGISTRY_CALL

WAKE_ACTIVITY = "wake_deliveries"

EXCESS_BOUND_SECONDS = 10.0
RECOVERY_SECONDS = 10.0
"""Added to each fault's end: the workflow task timeout of tasks a killed process held."""
CLOSE_PROTOCOL_SECONDS = REGISTRY_CALL.total_seconds() + CircuitConfig().settle_seconds
"""The most a close may take to reach its wake: publish the verdict, then settle."""

Interval = tuple[float, float]
"""(start, end) in unix seconds; end is infinite while it lasts."""


@dataclass
class Waits:
    endpoints_closed: int = 0
    endpoints_opened: list[str] = field(default_factory=list)
    holds: int = 0
    max_hold_while_closed_seconds: float = 0.0
    """Judged: the longest part of a hold while the circuit was closed, faults excused."""
    worst_hold: str = ""
    waits: int = 0
    max_excess_seconds: float = 0.0
    """Reported: the longest wait beyond the schedule (holds and the workers' queue)."""
    worst: str = ""
    max_queue_seconds: float = 0.0
    """Reported: the longest time a delivery's workflow task waited for a worker."""
    unmeasured: int = 0
    """Deliveries whose attempts could not be read (queries kept timing out)."""


def excess(begin: float, end: float, excused: Iterable[Interval]) -> float:
    """Seconds from `begin` to `end`, less their overlap with the `excused` intervals
    (overlapping intervals count once)."""
    if end <= begin:
        return 0.0
    covered, reached = 0.0, begin
    for lo_at, hi_at in sorted(excused):
        lo, hi = max(reached, lo_at), min(end, hi_at)
        if hi > lo:
            covered += hi - lo
            reached = hi
    return max(0.0, end - begin - covered)


def _clock(at: float) -> str:
    """A moment as UTC time of day, to find it in the logs and histories."""
    if math.isinf(at):
        return "still"
    return datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S.%f")[:-5]


def _span(interval: Interval) -> str:
    return f"{_clock(interval[0])}-{_clock(interval[1])}"


def with_recovery(windows: Iterable[Interval]) -> list[Interval]:
    return [(start, end + RECOVERY_SECONDS) for start, end in windows]


def _at(event: HistoryEvent) -> float:
    return event.event_time.seconds + event.event_time.nanos / 1e9


def holds_in(events: list[HistoryEvent], summaries: dict[int, str]) -> list[Interval]:
    """Each circuit hold of a delivery: from its timer's start to the first wake signal,
    firing or cancellation after it. `summaries`: event id -> decoded timer summary."""
    holds: list[Interval] = []
    since: float | None = None
    lifting = {
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
        EventType.EVENT_TYPE_TIMER_FIRED,
        EventType.EVENT_TYPE_TIMER_CANCELED,
    }
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
            if summaries.get(event.event_id, "").startswith(HELD_PREFIX):
                since = _at(event)
        elif since is not None and event.event_type in lifting:
            holds.append((since, _at(event)))
            since = None
    if since is not None:
        holds.append((since, math.inf))
    return holds


def longest_queue(events: list[HistoryEvent]) -> float:
    """The longest a workflow task waited between being scheduled and a worker taking it."""
    scheduled: dict[int, float] = {}
    longest = 0.0
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
            scheduled[event.event_id] = _at(event)
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            began = scheduled.get(event.workflow_task_started_event_attributes.scheduled_event_id)
            if began is not None:
                longest = max(longest, _at(event) - began)
    return longest


def not_closed_in(events: Iterable[HistoryEvent]) -> list[Interval]:
    """When one circuit run was not (yet) closed: from each opening until the wake after
    its close began, at most CLOSE_PROTOCOL_SECONDS after the close."""
    intervals: list[Interval] = []
    opened_at: float | None = None
    closed_at: float | None = None  # the last close, until its wake begins
    for event in events:
        if (
            closed_at is not None
            and event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
            and event.activity_task_scheduled_event_attributes.activity_type.name == WAKE_ACTIVITY
        ):
            began = intervals[-1][0]
            intervals[-1] = (began, min(_at(event), closed_at + CLOSE_PROTOCOL_SECONDS))
            closed_at = None
            continue
        fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
        payload = fields.indexed_fields.get(sa.STATUS.name)
        if payload is None:
            continue
        closed = json.loads(payload.data) == CircuitPhase.CLOSED.value
        if not closed and opened_at is None:
            opened_at, closed_at = _at(event), None
        elif closed and opened_at is not None:
            closed_at = _at(event)
            intervals.append((opened_at, closed_at))
            opened_at = None
    if opened_at is not None:
        intervals.append((opened_at, math.inf))
    return intervals


async def open_intervals(client: Client, endpoints: set[str]) -> dict[str, list[Interval]]:
    """When each endpoint's circuit was not (yet) closed, from every run's history."""
    intervals: dict[str, list[Interval]] = {}
    query = f"WorkflowType={quote(CIRCUIT_WORKFLOW)}"
    async for wf in client.list_workflows(query):
        endpoint = wf.id.removeprefix(circuit_id(""))
        if endpoint not in endpoints:
            continue
        history = await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()
        if found := not_closed_in(history.events):
            intervals.setdefault(endpoint, []).extend(found)
    return intervals


async def _summaries(client: Client, events: list[HistoryEvent]) -> dict[int, str]:
    """Timer summaries, through the client's codec (they are payloads like any other)."""
    timers = [
        e
        for e in events
        if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED
        and e.user_metadata.HasField("summary")
    ]
    if not timers:
        return {}
    texts = await client.data_converter.decode(
        [e.user_metadata.summary for e in timers], [str] * len(timers)
    )
    return {e.event_id: str(t) for e, t in zip(timers, texts, strict=True)}


async def measure(client: Client, deliveries: dict[str, str], windows: list[Interval]) -> Waits:
    """`deliveries`: delivery id -> endpoint id; `windows`: each fault's (start, end)."""
    open_while = await open_intervals(client, set(deliveries.values()))
    result = Waits(
        endpoints_closed=len(set(deliveries.values()) - set(open_while)),
        endpoints_opened=sorted(open_while),
    )
    faults = with_recovery(windows)
    limit = asyncio.Semaphore(8)

    async def one(delivery_id: str, endpoint: str) -> None:
        opened = open_while.get(endpoint, [])
        async with limit:
            handle = client.get_workflow_handle(delivery_id)
            for _ in range(5):  # a loaded worker answers queries late: ask again
                try:
                    events = [e async for e in handle.fetch_history_events()]
                    attempts = await handle.query("attempts", result_type=list[Attempt])
                    summaries = await _summaries(client, events)
                    break
                except RPCError:
                    await asyncio.sleep(2)
            else:
                result.unmeasured += 1
                return
        for start, lifted in holds_in(events, summaries):
            result.holds += 1
            # Holding while the circuit is open is the point: only the rest counts.
            held = excess(start, lifted, [*faults, *opened])
            if held > result.max_hold_while_closed_seconds:
                result.max_hold_while_closed_seconds = round(held, 1)
                result.worst_hold = (
                    f"{delivery_id} ({endpoint}) held {_clock(start)}-{_clock(lifted)}, "
                    f"circuit not closed {', '.join(_span(i) for i in opened) or 'never'}"
                )
        queued = longest_queue(events)
        if queued > result.max_queue_seconds:
            result.max_queue_seconds = round(queued, 1)
        due = _at(events[0])
        for attempt in attempts:
            result.waits += 1
            late = excess(due, attempt.started_at.timestamp(), [*faults, *opened])
            if late > result.max_excess_seconds:
                result.max_excess_seconds = round(late, 1)
                result.worst = f"{delivery_id} attempt {attempt.number} ({endpoint})"
            if attempt.next_attempt_at is None:
                break
            due = attempt.next_attempt_at.timestamp()

    await asyncio.gather(*(one(d, e) for d, e in deliveries.items()))
    return result
