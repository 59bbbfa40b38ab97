"""Validation at the edge: the workflow input, the retry schedule, ids and the event body."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError
from temporalio.client import Client

from tests.integration import endpoint_record
from webhooks.core.ids import dead_letter_id, delivery_id
from webhooks.core.models import (
    MAX_BODY_BYTES,
    DefaultChange,
    DeliveryOptions,
    DeliveryRequest,
    RetrySchedule,
    resolve_defaults,
    unknown_fields,
)
from webhooks.publisher import WebhookPublisher, build_request, event_body
from webhooks.registry.errors import RegistryError
from webhooks.registry.models import EndpointSettings

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
HEADER_SAFE = re.compile(r"^[\x21-\x7e]{1,200}$")


def request(**overrides: Any) -> DeliveryRequest:
    fields: dict[str, Any] = {
        "delivery_id": "msg_abc",
        "endpoint_id": "ep_1",
        "url": "https://example.com/hooks",
        "event_id": "evt_1",
        "event_type": "stream.settled",
        "body": "{}",
        "published_at": T0,
    }
    return DeliveryRequest.model_validate(fields | overrides)


# --- DeliveryRequest ------------------------------------------------------------------------


def test_valid_request_and_defaults() -> None:
    req = request()
    assert req.secret_ref == "default"
    assert req.options == DeliveryOptions()
    assert req.options.dead_letter_on_4xx is False
    assert req.generation == 0
    assert req.prior_attempts == []


def test_request_round_trips_through_json() -> None:
    req = request(options=DeliveryOptions(retry=RetrySchedule(schedule_seconds=[0, 1])))
    assert DeliveryRequest.model_validate_json(req.model_dump_json()) == req


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com",
        "https://example.com:8443/a/b?c=d",
        "http://127.0.0.1:9000/hook",
        "http://[::1]:8080/",
        "https://xn--bcher-kva.example/",
    ],
)
def test_good_urls(url: str) -> None:
    assert request(url=url).url == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file://x", "scheme must be http or https, not 'file'"),
        ("ftp://example.com/", "scheme must be http or https, not 'ftp'"),
        ("ftp://", "scheme must be http or https"),
        ("http://", "URL has no host"),
        ("https:///path-only", "URL has no host"),
        ("https://user:pass@example.com/", "must not carry credentials"),
        ("https://token@example.com/", "must not carry credentials"),
        ("not a url", "URL must not contain whitespace"),
        ("notaurl", "scheme must be http or https, not 'missing'"),
        ("//example.com/x", "not 'missing'"),
        ("", "not 'missing'"),
        ("http://[::1", "not a valid URL"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        request(url=url)


@pytest.mark.parametrize("field", ["delivery_id", "endpoint_id", "event_id", "event_type"])
@pytest.mark.parametrize(
    "value",
    ["", "has space", "new\nline", "tab\there", "crlf\r\nx-injected: 1", "é", "x" * 201],
    ids=["empty", "space", "newline", "tab", "crlf", "non-ascii", "too-long"],
)
def test_ids_must_be_header_safe(field: str, value: str) -> None:
    with pytest.raises(ValidationError, match="1-200 visible ASCII characters"):
        request(**{field: value})


def test_secret_ref_must_be_header_safe() -> None:
    with pytest.raises(ValidationError, match="visible ASCII"):
        request(secret_ref="two words")


def test_header_safe_accepts_punctuation_and_200_chars() -> None:
    assert request(event_type="a.b-c_d:e/f~!").event_type == "a.b-c_d:e/f~!"
    assert len(request(endpoint_id="e" * 200).endpoint_id) == 200


def test_body_up_to_256_kib_is_accepted() -> None:
    assert len(request(body="x" * MAX_BODY_BYTES).body) == MAX_BODY_BYTES


def test_body_over_256_kib_is_rejected() -> None:
    with pytest.raises(ValidationError, match=str(MAX_BODY_BYTES)):
        request(body="x" * (MAX_BODY_BYTES + 1))


def test_body_limit_counts_utf8_bytes_not_characters() -> None:
    body = "é" * (MAX_BODY_BYTES // 2 + 1)  # fewer characters than the limit, more bytes
    assert len(body) <= MAX_BODY_BYTES
    with pytest.raises(ValidationError, match=f"body is larger than {MAX_BODY_BYTES} bytes"):
        request(body=body)


def test_unknown_fields_are_rejected_when_built_in_python() -> None:
    with pytest.raises(ValidationError, match=r"unknown field\(s\): secret"):
        request(secret="whsec_oops")


def test_unknown_fields_from_json_are_ignored_and_named() -> None:
    raw = request().model_dump(mode="json")
    raw["priority"] = "high"
    raw["options"] = {**raw["options"], "fanout": 2}
    raw["options"]["retry"] = {**raw["options"]["retry"], "jitter_mode": "full"}
    decoded = DeliveryRequest.model_validate_json(json.dumps(raw))
    assert decoded == request()
    expected = ["options.fanout", "options.retry.jitter_mode", "priority"]
    assert sorted(unknown_fields(raw)) == expected
    assert unknown_fields("not an object") == []


def test_a_changed_default_applies_only_where_omitted_and_patched() -> None:
    change = DefaultChange(patch="jitter-0.1", path=("retry", "jitter"), value=0.1)
    raw = request().model_dump(mode="json", exclude={"options"})
    omitted = DeliveryRequest.model_validate_json(json.dumps(raw))
    asked: list[str] = []

    def patched(name: str) -> bool:
        asked.append(name)
        return True

    assert resolve_defaults(omitted, patched, (change,)).options.retry.jitter == 0.1
    assert resolve_defaults(omitted, lambda _: False, (change,)).options.retry.jitter == 0.2
    explicit = DeliveryRequest.model_validate_json(
        json.dumps({**raw, "options": {"retry": {"jitter": 0.3}}})
    )
    assert resolve_defaults(explicit, patched, (change,)).options.retry.jitter == 0.3
    assert asked == ["jitter-0.1"]  # an input naming the field records no marker
    top = DefaultChange(patch="dlq-4xx", path=("dead_letter_on_4xx",), value=True)
    assert resolve_defaults(omitted, patched, (top,)).options.dead_letter_on_4xx is True
    assert resolve_defaults(omitted, patched) == omitted  # no change of default yet


def test_negative_generation_is_rejected() -> None:
    with pytest.raises(ValidationError):
        request(generation=-1)


def test_models_are_frozen() -> None:
    req = request()
    field = "url"  # set by name: the type checker rightly refuses a direct assignment
    with pytest.raises(ValidationError, match="frozen"):
        setattr(req, field, "https://elsewhere.example/")
    assert req.url == "https://example.com/hooks"


# --- RetrySchedule --------------------------------------------------------------------------


def test_attempt_budget() -> None:
    assert RetrySchedule().attempt_budget == 10
    assert RetrySchedule(schedule_seconds=[0, 1, 2]).attempt_budget == 3
    assert RetrySchedule(schedule_seconds=[0, 1, 2], max_attempts=7).attempt_budget == 7
    assert RetrySchedule(schedule_seconds=None).attempt_budget == 10
    assert RetrySchedule(schedule_seconds=None, max_attempts=3).attempt_budget == 3


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"schedule_seconds": []}, "must not be empty"),
        ({"schedule_seconds": [0, -1]}, "must not be negative"),
        ({"max_attempts": 0}, "greater than or equal to 1"),
        ({"max_attempts": 101}, "less than or equal to 100"),
        ({"jitter": -0.1}, "greater than or equal to 0"),
        ({"jitter": 1.5}, "less than or equal to 1"),
        ({"initial_interval_seconds": 0}, "greater than 0"),
        ({"backoff_coefficient": 0.5}, "greater than or equal to 1"),
        ({"max_interval_seconds": 0}, "greater than 0"),
        ({"max_age_seconds": 0}, "greater than 0"),
        ({"retry_after_cap_seconds": -1}, "greater than or equal to 0"),
        ({"throttled_min_seconds": -1}, "greater than or equal to 0"),
        ({"retries": 3}, r"unknown field\(s\): retries"),
    ],
)
def test_bad_schedules(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RetrySchedule.model_validate(fields)


def test_schedule_from_json_uses_plain_seconds() -> None:
    schedule = RetrySchedule.model_validate_json('{"schedule_seconds": [0, 0.5, 30]}')
    assert schedule.schedule_seconds == [0, 0.5, 30]


# --- ids ------------------------------------------------------------------------------------


def test_delivery_id_is_deterministic() -> None:
    assert delivery_id("ep_1", "evt_1") == delivery_id("ep_1", "evt_1")


def test_delivery_id_differs_per_endpoint_and_event() -> None:
    ids = {
        delivery_id("ep_1", "evt_1"),
        delivery_id("ep_2", "evt_1"),
        delivery_id("ep_1", "evt_2"),
        # The separator keeps concatenations apart.
        delivery_id("ab", "c"),
        delivery_id("a", "bc"),
    }
    assert len(ids) == 5


@pytest.mark.parametrize(
    ("endpoint", "event"),
    [("ep_1", "evt_1"), ("with space", "new\nline"), ("é✓", "x" * 10_000), ("", "")],
)
def test_delivery_id_is_header_safe_whatever_the_inputs(endpoint: str, event: str) -> None:
    value = delivery_id(endpoint, event)
    assert re.fullmatch(r"msg_[a-z2-7]{26}", value)
    assert HEADER_SAFE.fullmatch(value)
    # And it is accepted wherever an id is validated.
    assert request(delivery_id=value).delivery_id == value


def test_dead_letter_id_per_generation() -> None:
    base = delivery_id("ep_1", "evt_1")
    assert dead_letter_id(base, 0) == f"{base}-dlq-0"
    assert dead_letter_id(base, 0) != dead_letter_id(base, 1)
    assert HEADER_SAFE.fullmatch(dead_letter_id(base, 12))


# --- event_body -----------------------------------------------------------------------------


def test_event_body_exact_shape() -> None:
    body = event_body("evt_1", "stream.settled", T0, {"amount": "1.00", "n": 2})
    assert body == (
        '{"id":"evt_1","type":"stream.settled","timestamp":"2026-11-28T12:00:00Z",'
        '"data":{"amount":"1.00","n":2}}'
    )


def test_event_body_timestamp_is_converted_to_utc() -> None:
    paris = timezone(timedelta(hours=1))
    moment = datetime(2026, 11, 28, 13, 0, 0, 250000, tzinfo=paris)
    payload = json.loads(event_body("e", "t", moment, {}))
    assert payload["timestamp"] == "2026-11-28T12:00:00.250000Z"


def test_event_body_keeps_unicode_as_is() -> None:
    body = event_body("e", "t", T0, {"name": "Zoë ✓"})
    assert '"name":"Zoë ✓"' in body


class Settled(BaseModel):
    stream_id: str
    amount: float
    at: datetime


def test_event_body_accepts_a_pydantic_model() -> None:
    data = Settled(stream_id="st_1", amount=1.5, at=T0)
    payload = json.loads(event_body("e", "t", T0, data))
    assert payload["data"] == {"stream_id": "st_1", "amount": 1.5, "at": "2026-11-28T12:00:00Z"}


@pytest.mark.parametrize("data", [[1, 2], "text", 42, None])
def test_event_body_rejects_non_object_data(data: object) -> None:
    with pytest.raises(ValueError, match="data must be a JSON object"):
        event_body("e", "t", T0, data)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_event_body_rejects_non_finite_numbers(value: float) -> None:
    with pytest.raises(ValueError, match="not JSON-serializable"):
        event_body("e", "t", T0, {"x": value})


def test_event_body_rejects_unserializable_values() -> None:
    with pytest.raises(ValueError, match="not JSON-serializable"):
        event_body("e", "t", T0, {"x": object()})


# --- build_request --------------------------------------------------------------------------


ENDPOINT = endpoint_record("ep_1", "https://example.com/hook")


def test_build_request() -> None:
    retry = RetrySchedule(schedule_seconds=[0, 1])
    req = build_request(
        endpoint=ENDPOINT,
        event_type="test.event",
        data={"amount": "1.00"},
        event_id="evt_42",
        retry=retry,
        dead_letter_on_4xx=True,
        timestamp=T0,
    )
    assert req.delivery_id == delivery_id("ep_1", "evt_42")
    assert req.event_id == "evt_42"
    assert (req.account_id, req.url, req.secret_ref) == (ENDPOINT.account_id, None, None)
    assert not req.legacy
    assert req.options == DeliveryOptions(retry=retry, dead_letter_on_4xx=True)
    assert req.body == event_body("evt_42", "test.event", T0, {"amount": "1.00"})
    assert req.published_at.tzinfo is not None


def test_build_request_takes_the_endpoints_schedule_unless_given() -> None:
    own = RetrySchedule(schedule_seconds=[0, 7])
    endpoint = ENDPOINT.model_copy(update={"settings": EndpointSettings(retry=own)})
    assert build_request(endpoint=endpoint, event_type="t", data={}).options.retry == own
    given = RetrySchedule(schedule_seconds=[0])
    chosen = build_request(endpoint=endpoint, event_type="t", data={}, retry=given)
    assert chosen.options.retry == given


def test_build_request_generates_an_event_id_when_absent() -> None:
    first = build_request(endpoint=ENDPOINT, event_type="t", data={})
    second = build_request(endpoint=ENDPOINT, event_type="t", data={})
    assert re.fullmatch(r"evt_[0-9a-f]{32}", first.event_id)
    assert first.event_id != second.event_id
    assert first.delivery_id == delivery_id("ep_1", first.event_id)
    assert json.loads(first.body)["id"] == first.event_id
    assert first.options == DeliveryOptions()


def test_build_request_defaults_the_timestamp_to_now() -> None:
    before = datetime.now(UTC)
    req = build_request(endpoint=ENDPOINT, event_type="t", data={})
    stamp = datetime.fromisoformat(json.loads(req.body)["timestamp"])
    assert before <= stamp <= req.published_at + timedelta(seconds=1)


def test_an_old_style_request_signs_with_default_unless_it_names_a_ref() -> None:
    old = request(secret_ref=None)
    assert old.legacy
    assert old.secret_ref == "default"
    assert request(secret_ref="partner").secret_ref == "partner"
    with pytest.raises(ValidationError, match="secret_ref goes only with url"):
        request(url=None, secret_ref="partner")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"event_type": ""}, "visible ASCII"),
        ({"event_id": "evt\n1"}, "visible ASCII"),
        ({"data": ["not", "an", "object"]}, "data must be a JSON object"),
        ({"data": {"blob": "x" * MAX_BODY_BYTES}}, "body"),
    ],
)
def test_build_request_rejects_bad_input_with_value_error(
    fields: dict[str, Any], message: str
) -> None:
    event: dict[str, Any] = {"endpoint": ENDPOINT, "event_type": "t", "data": {}}
    # ValidationError is a ValueError: callers catch one exception type.
    with pytest.raises(ValueError, match=message):
        build_request(**(event | fields))


async def test_publishing_needs_the_registry() -> None:
    # A lazy client never dials until used; port 1 would refuse if it did.
    client = await Client.connect("127.0.0.1:1", lazy=True)
    with pytest.raises(RegistryError, match="publishing needs the endpoint registry"):
        await WebhookPublisher(client).publish(endpoint_id="ep_1", event_type="t", data={})
