"""`bench.waits`: how long a delivery was held or waited, read from its history."""

from __future__ import annotations

import math

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

from bench.waits import (
    CLOSE_PROTOCOL_SECONDS,
    RECOVERY_SECONDS,
    WAKE_ACTIVITY,
    excess,
    holds_in,
    longest_queue,
    not_closed_in,
    with_recovery,
)
from webhooks.core import search_attributes as sa

T = 1_796_000_000.0


def event(event_id: int, kind: EventType.ValueType, at: float) -> HistoryEvent:
    e = HistoryEvent(event_id=event_id, event_type=kind)
    e.event_time.FromNanoseconds(int((T + at) * 1e9))
    return e


def test_an_early_or_punctual_attempt_waited_nothing_extra() -> None:
    assert excess(T + 5, T + 5, []) == 0
    assert excess(T + 5, T + 4, []) == 0


def test_a_late_attempt_waited_the_difference() -> None:
    assert excess(T + 5, T + 17, []) == 12


def test_time_inside_a_fault_and_its_recovery_is_excused_once() -> None:
    [fault] = with_recovery([(T + 10, T + 12)])
    assert fault == (T + 10, T + 12 + RECOVERY_SECONDS)
    # waited 0..40: the fault covers 10..12 plus the recovery allowance
    assert excess(T, T + 40, [fault]) == 40 - 2 - RECOVERY_SECONDS
    # the same window twice (a fault inside an open circuit) is not excused twice
    assert excess(T, T + 40, [fault, fault]) == 40 - 2 - RECOVERY_SECONDS
    assert excess(T, T + 40, [(T - 100, math.inf)]) == 0


def test_a_hold_runs_from_its_timer_to_the_wake_and_other_timers_are_not_holds() -> None:
    timer, signal = (
        EventType.EVENT_TYPE_TIMER_STARTED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
    )
    events = [
        event(1, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, 0),
        event(2, timer, 1),  # a backoff: not a hold
        event(3, EventType.EVENT_TYPE_TIMER_FIRED, 3),
        event(4, timer, 4),  # held
        event(5, signal, 30),  # the circuit's wake
        event(6, EventType.EVENT_TYPE_TIMER_CANCELED, 45),  # after the worker's queue
        event(7, timer, 50),  # held again, never lifted
    ]
    summaries = {
        2: "retry 2 at 12:00:03 UTC after HTTP 500",
        4: "circuit open: attempt 2",
        7: "circuit open: attempt 2",
    }
    assert holds_in(events, summaries) == [(T + 4, T + 30), (T + 50, math.inf)]


def test_the_queue_is_the_longest_wait_from_a_task_scheduled_to_started() -> None:
    started = event(3, EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED, 2.5)
    started.workflow_task_started_event_attributes.scheduled_event_id = 2
    late = event(9, EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED, 40)
    late.workflow_task_started_event_attributes.scheduled_event_id = 8
    events = [
        event(2, EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, 2),
        started,
        event(8, EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, 24),
        late,
    ]
    assert longest_queue(events) == 16


def phase(event_id: int, value: str, at: float) -> HistoryEvent:
    e = event(event_id, EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES, at)
    fields = e.upsert_workflow_search_attributes_event_attributes.search_attributes
    fields.indexed_fields[sa.STATUS.name].data = f'"{value}"'.encode()
    return e


def activity(event_id: int, name: str, at: float) -> HistoryEvent:
    e = event(event_id, EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, at)
    e.activity_task_scheduled_event_attributes.activity_type.name = name
    return e


def test_a_circuit_is_not_closed_from_its_opening_until_the_wake_after_its_close() -> None:
    events = [
        phase(1, "closed", 0),  # its first publish: not an opening
        phase(2, "open", 10),
        phase(3, "half_open", 20),  # still not closed: one interval
        phase(4, "closed", 30),
        activity(5, "publish_circuit", 31),  # the verdict reaches the registry first
        activity(6, WAKE_ACTIVITY, 37),  # then, settled, the wake begins
        phase(7, "open", 50),
        phase(8, "closed", 60),
        activity(9, WAKE_ACTIVITY, 60 + CLOSE_PROTOCOL_SECONDS + 20),  # a slow wake: capped
        phase(10, "disabled", 100),  # never enabled
    ]
    assert not_closed_in(events) == [
        (T + 10, T + 37),
        (T + 50, T + 60 + CLOSE_PROTOCOL_SECONDS),
        (T + 100, math.inf),
    ]


def test_a_close_without_its_wake_in_the_run_counts_as_closed_from_the_close() -> None:
    # continued as new between the close and its wake: no allowance is assumed
    assert not_closed_in([phase(1, "open", 0), phase(2, "closed", 9)]) == [(T, T + 9)]
