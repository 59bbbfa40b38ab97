"""Recorded histories still replay against today's workflow code.

A failure here means a workflow change is not deterministic with respect to workflows
already running in production: guard it with `workflow.patched(...)`, or, if the break is
intended, re-record with `python -m tests.replay.record` and say why (`DEVELOPING.md`).

`histories/*.json` are recorded from the current code; the dated subdirectories hold
histories recorded by older code, which must keep replaying too.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from worker import ALL_WORKFLOWS

ROOT = Path(__file__).parent / "histories"
HISTORIES = {
    path.relative_to(ROOT).with_suffix("").as_posix(): path.read_text()
    for path in sorted(ROOT.rglob("*.json"))
}
SCENARIOS = {
    "WebhookDelivery": {
        "delivered",  # after a 500 and a timeout
        "dead-lettered",  # attempts exhausted
        "redelivered",  # the run a dead letter's `redeliver` starts
        "gone",  # 410: dead-lettered at once
        "retry-now",  # a long backoff cut short by the signal
        "max-age",  # the next attempt would start too late
        "internal-error",  # the workflow's own exception, parked (recorded before the bounds)
        "unknown-fields",  # fields this worker does not know: ignored
        "invalid-input",  # not a delivery request: dead-lettered as invalid_input
        "wrong-delivery-id",  # an id not derived from endpoint and event: invalid_input
        "redelivered-new-schedule",  # redelivered with a new schedule, options kept
        "activity-error",  # the send activity raised: a failed attempt, then delivered
        "circuit-held-woken",  # held by an open circuit, woken when it closed
        "circuit-max-age",  # held by an open circuit past its maximum age
        "endpoint-disabled",  # an operator disabled the endpoint
        "registry-disabled",  # disabled in the registry while waiting to retry
        "registry-deleted",  # deleted from the registry while waiting to retry
    },
    "DeadLetter": {
        "redelivered",
        "discarded",
        "expired",
        "redelivered-new-schedule",  # options kept, earlier attempts carried
        "invalid-input",  # redeliver ignored (nothing to deliver), then discarded
    },
    "EndpointCircuit": {
        "trip-probe-close",  # trips, a probe fails, a probe succeeds, wakes, completes
        "disable-enable",  # operator signals, with the wake-ups they trigger
        "continued-as-new",  # the run that continues as new
        "after-continue-as-new",  # the run that starts from the carried snapshot
        "closed-after-continue-as-new",  # closed as it continued: publishes, wakes, ends
    },
    "BulkDeadLetterAction": {"redelivered"},  # counts, then signals a filter's matches
}
"""What `record.py` records from the current code: every path of every workflow type."""


def workflow_type(name: str) -> str:
    return name.rsplit("/", 1)[-1].split("-", 1)[0]


def test_every_workflow_type_the_worker_runs_has_required_scenarios() -> None:
    registered = {str(workflow._Definition.must_from_class(cls).name) for cls in ALL_WORKFLOWS}
    missing = {name for name in registered if not SCENARIOS.get(name)}
    assert not missing, f"no recorded scenario required for {sorted(missing)}"
    assert set(SCENARIOS) <= registered, "a scenario for a type the worker no longer runs"


def test_the_recorded_scenarios_are_all_there() -> None:
    # A scenario counts wherever it was recorded: at the top level (current code) or in a
    # dated folder (the code before a change, until the change's own recording lands).
    required = {f"{kind}-{scenario}" for kind, names in SCENARIOS.items() for scenario in names}
    recorded = {name.rsplit("/", 1)[-1] for name in HISTORIES}
    assert required <= recorded, sorted(required - recorded)


@pytest.mark.parametrize("name", HISTORIES)
async def test_history_replays_without_nondeterminism(name: str) -> None:
    recorded = json.loads(HISTORIES[name])
    # The recorder keeps the real workflow id (code may use it, e.g. an invalid input's
    # dead letter id); histories recorded before it replay under their file name.
    history = WorkflowHistory.from_json(recorded.pop("workflowId", name), recorded)
    started = history.events[0].workflow_execution_started_event_attributes
    assert started.workflow_type.name == workflow_type(name)
    replayer = Replayer(workflows=list(ALL_WORKFLOWS), data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
