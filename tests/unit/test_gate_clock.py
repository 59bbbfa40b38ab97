"""A hold's end is handed to the workflow on the workflow's clock: the send's wait for a
slot is taken off, so a local trip's hold still ends within LOCAL_TRUST_SECONDS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from activities.send import on_workflow_clock
from webhooks.core.models import Gate

T = datetime(2026, 12, 2, 7, 0, tzinfo=UTC)


def test_the_wait_for_a_slot_is_taken_off_the_hold() -> None:
    gate = Gate(allow=False, retry_at=T + timedelta(seconds=5))
    # scheduled at T, the send began 3 s later: the workflow times from T
    moved = on_workflow_clock(gate, scheduled_at=T, now=T + timedelta(seconds=3))
    assert moved == Gate(allow=False, retry_at=T + timedelta(seconds=2))


def test_a_send_that_did_not_wait_or_a_gate_without_a_time_is_unchanged() -> None:
    gate = Gate(allow=False, retry_at=T + timedelta(seconds=5))
    assert on_workflow_clock(gate, scheduled_at=T, now=T) == gate
    # a clock that stepped back between scheduling and sending moves nothing
    assert on_workflow_clock(gate, scheduled_at=T, now=T - timedelta(seconds=1)) == gate
    refused = Gate(allow=False, disabled=True)
    assert on_workflow_clock(refused, scheduled_at=T, now=T + timedelta(seconds=3)) == refused
