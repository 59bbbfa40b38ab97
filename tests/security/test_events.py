"""Typed events carry only what a customer needs, and nothing else gets in."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from tests.integration import endpoint_record
from webhooks.core.events import (
    EVENT_TYPES,
    EventData,
    InvalidEventError,
    PaymentTick,
    StreamSettled,
    register_event,
    validate_event_data,
)
from webhooks.publisher import build_request

SETTLED: dict[str, Any] = {
    "stream_id": "st_1",
    "settlement_id": "set_1",
    "amount": "1250.50",
    "currency": "EUR",
    "status": "settled",
    "settled_at": "2026-11-28T12:00:00Z",
}
TICK: dict[str, Any] = {
    "stream_id": "st_1",
    "payment_id": "pay_7",
    "sequence": 7,
    "amount": "0.000125",
    "cumulative_amount": "0.000875",
    "currency": "USD",
    "status": "succeeded",
    "ticked_at": "2026-11-28T12:00:07+00:00",
}


def test_streampay_events_are_registered() -> None:
    assert EVENT_TYPES["stream.settled"] is StreamSettled
    assert EVENT_TYPES["payment.tick"] is PaymentTick


def test_valid_events_pass_as_plain_json_values() -> None:
    assert validate_event_data("stream.settled", SETTLED) == SETTLED
    assert validate_event_data("payment.tick", TICK) == TICK | {"ticked_at": "2026-11-28T12:00:07Z"}


def test_a_model_instance_and_decimals_are_accepted_and_written_as_strings() -> None:
    event = StreamSettled.model_validate(
        {
            "stream_id": "st_1",
            "settlement_id": "set_2",
            "amount": Decimal("12.50"),
            "currency": "EUR",
            "status": "partially_settled",
            "settled_at": datetime(2026, 11, 28, 13, 0, tzinfo=timezone(timedelta(hours=1))),
            "period_start": datetime(2026, 11, 1, tzinfo=UTC),
        }
    )
    assert validate_event_data("stream.settled", event) == {
        "stream_id": "st_1",
        "settlement_id": "set_2",
        "amount": "12.50",  # cents kept as written
        "currency": "EUR",
        "status": "partially_settled",
        "settled_at": "2026-11-28T12:00:00Z",  # normalized to UTC
        "period_start": "2026-11-01T00:00:00Z",
    }
    assert validate_event_data("payment.tick", TICK | {"amount": 3})["amount"] == "3"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"customer_email": "ada@example.com"}, "customer_email: Extra inputs are not permitted"),
        ({"customer_name": "Ada Lovelace"}, "customer_name: Extra inputs are not permitted"),
        ({"amount": 12.5}, "amount: Input should be a valid string"),
        ({"amount": "12,50"}, "amount: String should match pattern"),
        ({"amount": "1e3"}, "amount: String should match pattern"),
        ({"amount": "NaN"}, "amount: String should match pattern"),
        ({"amount": True}, "amount: Input should be a valid string"),
        ({"currency": "eur"}, "currency: String should match pattern"),
        ({"stream_id": "Ada Lovelace <ada@example.com>"}, "stream_id: String should match"),
        ({"settled_at": "2026-11-28T12:00:00"}, "settled_at: Input should have timezone info"),
        ({"status": "done"}, "status: Input should be"),
    ],
)
def test_bad_or_personal_data_is_refused_with_the_field_named(
    change: dict[str, Any], problem: str
) -> None:
    with pytest.raises(InvalidEventError) as info:
        validate_event_data("stream.settled", SETTLED | change)
    assert str(info.value).startswith("data is not a valid stream.settled event: ")
    assert problem in str(info.value)


def test_missing_fields_are_all_listed() -> None:
    with pytest.raises(InvalidEventError) as info:
        validate_event_data("payment.tick", {"stream_id": "st_1"})
    for name in ("payment_id", "sequence", "amount", "cumulative_amount", "currency", "ticked_at"):
        assert f"{name}: Field required" in str(info.value)


def test_a_model_of_another_type_is_refused() -> None:
    tick = PaymentTick.model_validate(TICK)
    with pytest.raises(InvalidEventError, match="must be a StreamSettled, not PaymentTick"):
        validate_event_data("stream.settled", tick)


def test_unregistered_types_pass_through_untouched() -> None:
    data = {"anything": [1, 2.5, None]}
    assert validate_event_data("custom.thing", data) is data


def test_the_extension_point_registers_new_types() -> None:
    @register_event("test.refunded")
    class Refunded(EventData):
        refund_id: str

    try:
        assert validate_event_data("test.refunded", {"refund_id": "rf_1"}) == {"refund_id": "rf_1"}
        with pytest.raises(InvalidEventError, match="iban: Extra inputs"):
            validate_event_data("test.refunded", {"refund_id": "rf_1", "iban": "DE89..."})
        assert register_event("test.refunded")(Refunded) is Refunded  # idempotent
        with pytest.raises(ValueError, match="already registered"):

            @register_event("test.refunded")
            class Other(EventData):
                pass

    finally:
        del EVENT_TYPES["test.refunded"]


def test_publishing_validates_typed_events_into_the_signed_body() -> None:
    request = build_request(
        endpoint=endpoint_record("ep_1"), event_type="stream.settled", data=SETTLED
    )
    assert json.loads(request.body)["data"] == SETTLED
    with pytest.raises(InvalidEventError, match="email: Extra inputs are not permitted"):
        build_request(
            endpoint=endpoint_record("ep_1"),
            event_type="stream.settled",
            data=SETTLED | {"email": "ada@example.com"},
        )
