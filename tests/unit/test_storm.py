"""`bench.storm`'s pure helpers: the dev server's metrics, the circuit's half-open spells,
the no-circuit estimate."""

from __future__ import annotations

from collections import Counter

from bench.storm import (
    STORM_RETRY,
    _attempts_within,
    _workflow_tasks_per_s,
    frontend_calls,
    half_open_durations,
)


def line(operation: str, service: str, value: str, namespace: str = "default") -> str:
    labels = f'namespace="{namespace}",operation="{operation}",service_name="{service}"'
    return f"service_requests{{{labels}}} {value}"


METRICS = "\n".join(
    [
        "# HELP service_requests service_requests counter",
        "# TYPE service_requests counter",
        line("RespondWorkflowTaskCompleted", "frontend", "120"),
        line("RespondWorkflowTaskCompleted", "history", "999"),
        line("RespondWorkflowTaskFailed", "frontend", "3"),
        line("GetSystemInfo", "frontend", "2.0", namespace="_unknown_"),
        line("RespondWorkflowTaskCompleted", "frontend", "5", namespace="other"),
        'service_requests_total_bogus{operation="X",service_name="frontend"} 7',
        'task_requests{operation="RespondWorkflowTaskCompleted",service_name="frontend"} 50',
    ]
)


def test_frontend_calls_sum_the_frontend_service_requests_by_operation() -> None:
    calls = frontend_calls(METRICS)
    assert calls == Counter(
        {"RespondWorkflowTaskCompleted": 125, "RespondWorkflowTaskFailed": 3, "GetSystemInfo": 2}
    )


def test_workflow_tasks_per_second_count_completed_and_failed_tasks() -> None:
    before = Counter({"RespondWorkflowTaskCompleted": 100, "RespondWorkflowTaskFailed": 1})
    after = Counter(
        {"RespondWorkflowTaskCompleted": 140, "RespondWorkflowTaskFailed": 1, "Poll": 900}
    )
    assert _workflow_tasks_per_s(before, after, 20) == 2.0
    assert _workflow_tasks_per_s(None, after, 20) is None
    assert _workflow_tasks_per_s(before, None, 20) is None


def test_attempts_within_follow_the_schedule_without_a_circuit() -> None:
    # 0, 1, 2, 4, 8, 15, 15, ...: attempts at 0, 1, 3, 7, 15, 30, 45 s.
    assert _attempts_within(STORM_RETRY, 0) == 1
    assert _attempts_within(STORM_RETRY, 7) == 4
    assert _attempts_within(STORM_RETRY, 45) == 7


def test_half_open_spells_last_until_the_next_phase_change() -> None:
    timeline = [
        (10.0, "phase open"),
        (10.0, "phase open"),
        (20.0, "publish_circuit scheduled"),
        (20.1, "phase half_open"),
        (20.5, "request"),
        (20.6, "phase open"),
        (40.6, "phase half_open"),
        (40.6, "phase half_open"),
        (90.2, "phase closed"),
        (95.0, "phase half_open"),
    ]
    assert half_open_durations(timeline) == [0.5, 49.6]
    assert half_open_durations([]) == []
