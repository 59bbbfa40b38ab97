"""Operational events: which circuit changes StreamPay hears of, and what the data says."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment

from activities.operational import OperationalEvents, accounts_in
from webhooks.core.circuit import CircuitPhase, CircuitSnapshot
from webhooks.core.events import EVENT_TYPES, validate_event_data
from webhooks.core.ids import dead_letter_id
from webhooks.core.models import DeadLetterReason, salvaged_request
from webhooks.core.operational import (
    CIRCUIT_CLOSED,
    CIRCUIT_OPENED,
    ENDPOINT_DISABLED,
    ENDPOINT_ENABLED,
    TYPES,
    DeadLetterExpiring,
    DeliveryDeadLettered,
    OperationalConfig,
    OperationalEvent,
    circuit_event,
    json_schema,
)
from webhooks.registry.models import NewEndpoint
from webhooks.registry.service import EndpointRegistry

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
SCHEMA = Path(__file__).parents[2] / "docs" / "schema" / "operational-events.json"
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


@pytest.mark.parametrize("event_type", ["billing:invoice/paid", "x" * 200, "unknown"])
def test_whatever_a_delivery_carries_can_be_reported(event_type: str) -> None:
    """Every id and type a delivery request accepts (here one salvaged from an unusable
    input) fits the events' data: a stricter rule would fail the dead letter reporting it."""
    raw = {"endpoint_id": "ep/" + "e" * 197, "event_id": "evt 1", "event_type": event_type}
    request = salvaged_request(raw, "msg_" + "m" * 196, NOW)
    common: dict[str, Any] = {
        "endpoint_id": request.endpoint_id,
        "delivery_id": request.delivery_id,
        "dead_letter_id": dead_letter_id(request.delivery_id, 12),
        "event_type": request.event_type,
        "reason": DeadLetterReason.INVALID_INPUT,
        "expires_at": NOW,
    }
    lettered = DeliveryDeadLettered(
        **common, event_id=request.event_id, attempts=0, dead_lettered_at=NOW
    )
    assert lettered.event_type == event_type
    assert lettered.event_id == "unknown"  # not header-safe, so not salvaged
    assert DeadLetterExpiring(**common).endpoint_id == raw["endpoint_id"]


class Published:
    """Records what the activity hands to the publisher's `publish_event`."""

    def __init__(self) -> None:
        self.calls: list[dict[str, object]] = []

    async def __call__(
        self, *, account_id: str, event_type: str, data: object, event_id: str
    ) -> list[str]:
        self.calls.append(
            {"account_id": account_id, "event_type": event_type, "data": data, "id": event_id}
        )
        return ["msg_ops_1"]


async def account_of(endpoint_id: str) -> str | None:
    return {"ep_ops": "acct_ops", "ep_1": "acct_9"}.get(endpoint_id)


def opened(endpoint_id: str) -> OperationalEvent:
    snapshot = CircuitSnapshot(endpoint_id=endpoint_id, phase=P.OPEN, opened_at=NOW)
    event = circuit_event(P.CLOSED, snapshot, NOW, event_id=f"c.{endpoint_id}.1", by_operator=False)
    assert event is not None
    return event


async def test_the_activity_publishes_to_the_operations_account() -> None:
    published = Published()
    events = OperationalEvents(
        operations_account="acct_ops",
        publish=published,
        account_of=account_of,
        expiry_warning_seconds=3600,
    )
    env = ActivityEnvironment()
    config = await env.run(events.publish_operational_event, opened("ep_1"))
    assert config == OperationalConfig(enabled=True, expiry_warning_seconds=3600)
    (call,) = published.calls
    assert call["account_id"] == "acct_ops"
    assert call["event_type"] == CIRCUIT_OPENED
    assert call["id"] == "c.ep_1.1"
    assert isinstance(call["data"], dict)
    assert call["data"]["account_id"] == "acct_9"  # the customer's, from the registry
    # About an operations endpoint itself: never published (no loops).
    await env.run(events.publish_operational_event, opened("ep_ops"))
    assert len(published.calls) == 1


async def test_without_an_operations_account_nothing_is_published() -> None:
    published = Published()
    events = OperationalEvents(operations_account=None, publish=published, account_of=account_of)
    config = await ActivityEnvironment().run(events.publish_operational_event, opened("ep_1"))
    assert config.enabled is False
    assert published.calls == []


async def test_the_subject_account_comes_from_the_registry(registry: EndpointRegistry) -> None:
    new = NewEndpoint(id="ep_known", account_id="acct_9", url="https://example.com/hook")
    await registry.create(new)
    account_of = accounts_in(registry)
    assert await account_of("ep_known") == "acct_9"
    assert await account_of("ep_deleted") is None  # the event still goes, without it


def test_the_committed_schema_is_the_models() -> None:
    committed = json.loads(SCHEMA.read_text())
    assert committed == json_schema(), (
        "run: .venv/bin/python -c 'import json; from webhooks.core.operational import "
        "json_schema; print(json.dumps(json_schema(), indent=2))' > " + str(SCHEMA)
    )
    branches = {b["properties"]["type"]["const"]: b for b in committed["oneOf"]}
    assert set(branches) == set(TYPES)
    dead = committed["$defs"]["DeliveryDeadLettered"]
    assert "url" not in dead["properties"]
    assert not dead.get("additionalProperties", True)
