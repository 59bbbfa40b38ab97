"""The Temporal UI texts of a delivery: short, factual, and never customer data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from webhooks.core.models import DeliveryState, ErrorKind, SendResult
from webhooks.core.summaries import (
    attempt_summary,
    cause_text,
    current_details,
    held_summary,
    outcome_text,
    retry_summary,
    static_details,
    when_text,
)

NOW = datetime(2026, 12, 1, 14, 53, 20, tzinfo=UTC)


def result(**fields: object) -> SendResult:
    return SendResult.model_validate({"started_at": NOW, "duration_ms": 23.4, **fields})


@pytest.mark.parametrize(
    ("fields", "text", "cause"),
    [
        ({"status_code": 500, "error_kind": "http_status"}, "HTTP 500 in 23 ms", "HTTP 500"),
        ({"status_code": 200}, "HTTP 200 in 23 ms", "HTTP 200"),
        ({"error_kind": "timeout"}, "timed out in 23 ms", "timed out"),
        ({"error_kind": "connect"}, "connection failed in 23 ms", "connection failed"),
        ({"error_kind": "dns"}, "DNS lookup failed in 23 ms", "DNS lookup failed"),
        ({}, "internal error in 23 ms", "internal error"),
    ],
)
def test_outcome(fields: dict[str, object], text: str, cause: str) -> None:
    assert outcome_text(result(**fields)) == text
    assert cause_text(result(**fields)) == cause


def test_every_error_kind_reads_as_words() -> None:
    for kind in ErrorKind:
        if kind in (ErrorKind.HTTP_STATUS, ErrorKind.REDIRECT):
            continue  # these always carry a status code
        assert "_" not in outcome_text(result(error_kind=kind))


def test_attempt_and_timer_summaries() -> None:
    assert attempt_summary(3) == "attempt 3"
    at = NOW + timedelta(seconds=28)
    failed = result(status_code=500, error_kind="http_status")
    assert retry_summary(4, at, NOW, failed) == "retry 4 at 14:53:48 UTC after HTTP 500 in 23 ms"
    throttled = result(status_code=429, error_kind="http_status", retry_after_seconds=60)
    assert retry_summary(2, at, NOW, throttled).endswith(
        "after HTTP 429 in 23 ms (Retry-After 60 s)"
    )
    tomorrow = NOW + timedelta(hours=12)
    assert when_text(tomorrow, NOW) == "2026-12-02 02:53:20 UTC"
    assert held_summary(2, at, NOW) == "circuit open: attempt 2 at 14:53:48 UTC"


def test_current_details() -> None:
    text = current_details(
        DeliveryState.RETRYING,
        attempts=2,
        last=result(status_code=500, error_kind="http_status"),
        next_attempt_at=NOW + timedelta(seconds=28),
        now=NOW,
    )
    assert text == (
        "**retrying** after 2 attempts\n\nlast attempt: HTTP 500 in 23 ms\n\n"
        "next attempt: 14:53:48 UTC"
    )
    done = current_details(
        DeliveryState.DEAD_LETTERED,
        attempts=1,
        last=None,
        next_attempt_at=None,
        now=NOW,
        dead_letter_reason="gone",
    )
    assert done == "**dead_lettered** after 1 attempt\n\ndead-lettered: gone"


def test_static_details_and_no_customer_data() -> None:
    text = static_details(
        endpoint_id="ep_1", event_id="evt_1", event_type="stream.settled", host="hooks.example"
    )
    assert text == (
        "**endpoint**: ep_1\n\n**event**: evt_1 (stream.settled)\n\n**host**: hooks.example"
    )
    assert static_details(
        endpoint_id="ep_1", event_id="e", event_type="t", account_id="acct_9"
    ).startswith("**account**: acct_9")
    leaky = result(status_code=500, error="HTTP 500 secret=abc", response_excerpt="card 4242")
    for text in (outcome_text(leaky), retry_summary(2, NOW, NOW, leaky)):
        assert "secret" not in text
        assert "4242" not in text
