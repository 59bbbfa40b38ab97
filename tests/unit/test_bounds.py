"""The bounds that keep every permitted delivery inside Temporal's limits (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from webhooks.config import Settings
from webhooks.core.ids import content_digest, delivery_id
from webhooks.core.models import (
    Attempt,
    AttemptsSummary,
    DeliveryOptions,
    DeliveryRequest,
    Outcome,
    RetrySchedule,
    salvaged_request,
)
from webhooks.core.policy import (
    MAX_AGE_SECONDS,
    MAX_ATTEMPTS,
    MAX_CARRIED_ATTEMPTS,
    MAX_ERROR_CHARS,
    MAX_EXCERPT_BYTES,
    MAX_HTTP_TIMEOUT_SECONDS,
    carried_attempts,
    input_problems,
    kept_attempt,
    schedule_problems,
)
from webhooks.publisher import checked
from workflows.delivery import SEND_TIMEOUT

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def request(**changes: Any) -> DeliveryRequest:
    fields: dict[str, Any] = {
        "delivery_id": delivery_id("ep_1", "evt_1"),
        "endpoint_id": "ep_1",
        "event_id": "evt_1",
        "event_type": "t.bounds",
        "body": "{}",
        "published_at": T0,
    }
    return DeliveryRequest(**{**fields, **changes})


def attempt(n: int, outcome: Outcome = Outcome.RETRYABLE, **changes: Any) -> Attempt:
    return Attempt(
        number=n,
        started_at=T0 + timedelta(seconds=n),
        duration_ms=1,
        outcome=outcome,
        **changes,
    )


def test_a_published_request_is_within_bounds() -> None:
    assert input_problems(request(), delivery_id("ep_1", "evt_1")) == []
    assert checked(request()) == request()


@pytest.mark.parametrize(
    ("schedule", "says"),
    [
        ({"schedule_seconds": [0] + [1] * MAX_ATTEMPTS}, "has 101 entries; at most 100"),
        ({"schedule_seconds": [0, 0]}, "waits less than 0.1 s"),
        ({"schedule_seconds": [0, MAX_AGE_SECONDS + 1]}, "waits longer than"),
        ({"schedule_seconds": None, "initial_interval_seconds": 0.01}, "initial_interval"),
        ({"max_age_seconds": MAX_AGE_SECONDS + 1}, "max_age_seconds is above"),
        ({"max_interval_seconds": MAX_AGE_SECONDS * 2}, "max_interval_seconds is above"),
        ({"retry_after_cap_seconds": MAX_AGE_SECONDS * 2}, "retry_after_cap_seconds is above"),
        ({"throttled_min_seconds": MAX_AGE_SECONDS * 2}, "throttled_min_seconds is above"),
    ],
)
def test_a_schedule_beyond_the_bounds_is_named(schedule: dict[str, Any], says: str) -> None:
    problems = schedule_problems(RetrySchedule(**schedule))
    assert len(problems) == 1
    assert says in problems[0]
    with pytest.raises(ValueError, match="delivery refused"):
        checked(request(options=DeliveryOptions(retry=RetrySchedule(**schedule))))


def test_max_attempts_is_capped_by_the_model_and_the_bounds() -> None:
    assert schedule_problems(RetrySchedule(max_attempts=MAX_ATTEMPTS)) == []
    assert (
        "max_attempts"
        in schedule_problems(RetrySchedule.model_construct(max_attempts=MAX_ATTEMPTS + 1))[0]
    )


def test_ids_retention_and_carried_attempts_are_checked() -> None:
    wrong = request(delivery_id="msg_mine")
    assert "not derived" in input_problems(wrong)[0]
    assert "workflow id" in input_problems(request(), "other")[0]
    long = request(options=DeliveryOptions(dead_letter_retention_seconds=365 * 86400))
    assert "dead_letter_retention_seconds" in input_problems(long)[0]
    many = request(prior_attempts=[attempt(n) for n in range(MAX_CARRIED_ATTEMPTS + 1)])
    assert "prior_attempts" in input_problems(many)[0]


def test_excerpts_and_errors_are_cut_to_their_caps() -> None:
    small = attempt(1, response_excerpt="ok", error="x")
    assert kept_attempt(small) is small
    big = kept_attempt(attempt(1, response_excerpt="é" * MAX_EXCERPT_BYTES, error="e" * 9999))
    assert big.response_excerpt is not None
    assert big.error is not None
    assert len(big.response_excerpt.encode()) <= MAX_EXCERPT_BYTES
    assert big.response_excerpt == "é" * (MAX_EXCERPT_BYTES // 2)  # never half a character
    assert len(big.error) == MAX_ERROR_CHARS


def test_a_redelivery_carries_the_newest_attempts_and_counts_the_rest() -> None:
    few = [attempt(n) for n in range(3)]
    assert carried_attempts(few, None) == (few, None)
    runs = [attempt(n, Outcome.DELIVERED if n == 0 else Outcome.RETRYABLE) for n in range(120)]
    kept, summary = carried_attempts(runs, None)
    assert kept == runs[-MAX_CARRIED_ATTEMPTS:]
    assert summary == AttemptsSummary(
        count=70,
        first_started_at=runs[0].started_at,
        last_started_at=runs[69].started_at,
        delivered=1,
    )
    older = AttemptsSummary(count=5, first_started_at=T0 - timedelta(days=1), delivered=0)
    _, merged = carried_attempts(runs, older)
    assert merged is not None
    assert (merged.count, merged.first_started_at, merged.delivered) == (
        75,
        older.first_started_at,
        1,
    )


def test_the_send_backstop_outlasts_the_longest_http_timeout_a_worker_allows() -> None:
    limit = Settings.model_fields["http_timeout_seconds"].metadata
    assert any(getattr(m, "le", None) == MAX_HTTP_TIMEOUT_SECONDS for m in limit)
    assert SEND_TIMEOUT.total_seconds() > MAX_HTTP_TIMEOUT_SECONDS


def test_a_worker_records_no_more_of_a_response_than_the_attempt_table_keeps() -> None:
    limit = Settings.model_fields["response_excerpt_bytes"].metadata
    assert any(getattr(m, "le", None) == MAX_EXCERPT_BYTES for m in limit)


def test_an_unusable_input_keeps_what_identity_it_has() -> None:
    salvaged = salvaged_request(
        {"endpoint_id": "ep_1", "event_id": "has spaces", "account_id": 7}, "msg_x", T0
    )
    assert (salvaged.delivery_id, salvaged.endpoint_id, salvaged.event_id) == (
        "msg_x",
        "ep_1",
        "unknown",
    )
    assert salvaged.account_id is None
    assert salvaged_request(None, "bad id", T0).delivery_id == "unknown"


def test_the_content_digest_ignores_the_timestamp_only() -> None:
    body = '{"id":"e","type":"t","timestamp":"2026-12-01T12:00:00Z","data":{"a":1}}'
    later = '{"data":{"a":1},"type":"t","id":"e","timestamp":"2026-12-02T12:00:00Z"}'
    assert content_digest(body) == content_digest(later)
    assert content_digest(body) != content_digest(body.replace('"a":1', '"a":2'))
    assert content_digest("not json").startswith("sha256:")
