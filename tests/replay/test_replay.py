"""Recorded histories still replay against today's workflow code.

A failure here means a change to `WebhookDelivery` or `DeadLetter` is not deterministic with
respect to workflows already running in production: guard it with `workflow.patched(...)`,
or, if the break is intended, re-record with `python -m tests.replay.record` and say why.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows.dead_letter import DeadLetter
from workflows.delivery import WebhookDelivery

HISTORIES = {
    path.stem: path.read_text()
    for path in sorted((Path(__file__).parent / "histories").glob("*.json"))
}
REQUIRED = {
    "WebhookDelivery-delivered",
    "WebhookDelivery-dead-lettered",
    "WebhookDelivery-redelivered",
    "DeadLetter-redelivered",
    "DeadLetter-discarded",
}


def test_the_recorded_scenarios_are_all_there() -> None:
    assert set(HISTORIES) >= REQUIRED


@pytest.mark.parametrize("name", HISTORIES)
async def test_history_replays_without_nondeterminism(name: str) -> None:
    history = WorkflowHistory.from_json(name, HISTORIES[name])
    workflow_type = history.events[0].workflow_execution_started_event_attributes.workflow_type
    assert workflow_type.name == name.split("-")[0]
    replayer = Replayer(
        workflows=[WebhookDelivery, DeadLetter], data_converter=pydantic_data_converter
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
