"""Operational events: which circuit changes StreamPay hears of, and what the data says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from webhooks.core.circuit import CircuitPhase, CircuitSnapshot
from webhooks.core.events import EVENT_TYPES, validate_event_data
from webhooks.core.operational import (
    CIRCUIT_CLOSED,
    CIRCUIT_OPENED,
    ENDPOINT_DISABLED,
    ENDPOINT_ENABLED,
    TYPES,
    DeliveryDeadLettered,
    circuit_event,
)

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
P = CircuitPhase


def test_every_type_has_a_registered_schema() -> None:
    assert len(TYPES) == 6
    for event_type in TYPES:
        assert event_type in EVENT_TYPES
        assert "account_id" in EVENT_TYPES[event_type].model_fields


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (P.CLOSED, P.OPEN, CIRCUIT_OPENED),
        (P.OPEN, P.HALF_OPEN, None),  # probing, not news
        (P.HALF_OPEN, P.OPEN, None),  # a failed probe: still the same outage
        (P.HALF_OPEN, P.CLOSED, CIRCUIT_CLOSED),
        (P.OPEN, P.CLOSED, CIRCUIT_CLOSED),
        (P.OPEN, P.DISABLED, ENDPOINT_DISABLED),
        (P.CLOSED, P.DISABLED, ENDPOINT_DISABLED),
        (P.DISABLED, P.CLOSED, ENDPOINT_ENABLED),
    ],
)
def test_circuit_changes(old: CircuitPhase, new: CircuitPhase, expected: str | None) -> None:
    snapshot = CircuitSnapshot(
        endpoint_id="ep_1",
        phase=new,
        opened_at=NOW - timedelta(minutes=1),
        next_probe_at=NOW + timedelta(seconds=30),
        failing_since=NOW - timedelta(days=5),
        disabled_reason="failing continuously for 5 days" if new is P.DISABLED else None,
    )
    event = circuit_event(old, snapshot, NOW, event_id="circuit-ep_1.r1.7", by_operator=False)
    if expected is None:
        assert event is None
        return
    assert event is not None
    assert event.event_type == expected
    assert event.event_id == "circuit-ep_1.r1.7"
    assert event.endpoint_id == "ep_1"
    assert validate_event_data(event.event_type, event.data) == event.data
    if expected == ENDPOINT_DISABLED:
        assert event.data["automatic"] is True
        assert event.data["reason"] == "failing continuously for 5 days"
        assert event.data["failing_since"] == "2026-11-26T12:00:00Z"
    if expected == CIRCUIT_OPENED:
        assert event.data["next_probe_at"] == "2026-12-01T12:00:30Z"


def test_an_operator_disable_is_not_automatic() -> None:
    snapshot = CircuitSnapshot(endpoint_id="ep_1", phase=P.DISABLED, disabled_reason="fraud")
    event = circuit_event(P.CLOSED, snapshot, NOW, event_id="x", by_operator=True)
    assert event is not None
    assert event.data["automatic"] is False
    assert event.data["reason"] == "fraud"


def test_dead_letter_data_keeps_publisher_ids_and_no_payload() -> None:
    data = DeliveryDeadLettered(
        endpoint_id="ep_1",
        delivery_id="msg_abc",
        dead_letter_id="msg_abc-dlq-0",
        event_id="order.42:paid",  # a publisher's own id format
        event_type="stream.settled",
        reason="exhausted",
        attempts=10,
        dead_lettered_at=NOW,
        expires_at=NOW + timedelta(days=30),
    )
    dumped = data.model_dump(mode="json", exclude_none=True)
    assert dumped["reason"] == "exhausted"
    assert set(dumped) == {
        "endpoint_id",
        "delivery_id",
        "dead_letter_id",
        "event_id",
        "event_type",
        "reason",
        "attempts",
        "dead_lettered_at",
        "expires_at",
    }
    with pytest.raises(ValueError, match="Extra inputs"):
        DeliveryDeadLettered.model_validate({**dumped, "body": "{}"})
