"""The pure delivery policy: classification, backoff and the decision after each attempt."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from webhooks.core.models import (
    DeadLetterReason,
    DeliveryOptions,
    ErrorKind,
    Outcome,
    RetrySchedule,
    SendResult,
)
from webhooks.core.policy import (
    Classification,
    Decision,
    base_delay,
    classify,
    decide,
    is_throttled,
    next_delay,
)

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
DEFAULT = DeliveryOptions()
STRICT = DeliveryOptions(dead_letter_on_4xx=True)
NO_JITTER = RetrySchedule(jitter=0)
NO_JITTER_OPTIONS = DeliveryOptions(retry=NO_JITTER)


def sent(
    status: int | None = None,
    kind: ErrorKind | None = None,
    retry_after: float | None = None,
) -> SendResult:
    return SendResult(
        started_at=T0,
        duration_ms=1.0,
        status_code=status,
        error_kind=kind,
        retry_after_seconds=retry_after,
    )


def rng(seed: int = 0) -> random.Random:
    return random.Random(seed)


# --- classification ----------------------------------------------------------------------


@pytest.mark.parametrize("code", [200, 201, 202, 204, 299])
@pytest.mark.parametrize("options", [DEFAULT, STRICT])
def test_2xx_is_delivered(code: int, options: DeliveryOptions) -> None:
    assert classify(sent(code), options) == Classification(Outcome.DELIVERED)


@pytest.mark.parametrize("code", [300, 301, 302, 303, 307, 308])
@pytest.mark.parametrize("options", [DEFAULT, STRICT])
def test_3xx_is_retryable_even_when_4xx_dead_letters(code: int, options: DeliveryOptions) -> None:
    result = sent(code, ErrorKind.REDIRECT)
    assert classify(result, options) == Classification(Outcome.RETRYABLE)


@pytest.mark.parametrize("code", [408, 425, 429, 500, 502, 503, 504, 599])
@pytest.mark.parametrize("options", [DEFAULT, STRICT])
def test_not_now_codes_are_retryable(code: int, options: DeliveryOptions) -> None:
    result = sent(code, ErrorKind.HTTP_STATUS)
    assert classify(result, options) == Classification(Outcome.RETRYABLE)


@pytest.mark.parametrize("options", [DEFAULT, STRICT])
def test_410_gone_is_permanent(options: DeliveryOptions) -> None:
    result = sent(410, ErrorKind.HTTP_STATUS)
    assert classify(result, options) == Classification(Outcome.PERMANENT, DeadLetterReason.GONE)


@pytest.mark.parametrize("code", [400, 401, 403, 404, 405, 409, 413, 422, 451, 499])
def test_other_4xx_retryable_by_default(code: int) -> None:
    result = sent(code, ErrorKind.HTTP_STATUS)
    assert classify(result, DEFAULT) == Classification(Outcome.RETRYABLE)


@pytest.mark.parametrize("code", [400, 401, 403, 404, 405, 409, 413, 422, 451, 499])
def test_other_4xx_rejected_with_dead_letter_on_4xx(code: int) -> None:
    result = sent(code, ErrorKind.HTTP_STATUS)
    assert classify(result, STRICT) == Classification(Outcome.PERMANENT, DeadLetterReason.REJECTED)


@pytest.mark.parametrize("code", [100, 199, 600, 999])
def test_odd_codes_are_retryable(code: int) -> None:
    assert classify(sent(code), STRICT) == Classification(Outcome.RETRYABLE)


@pytest.mark.parametrize("options", [DEFAULT, STRICT])
def test_blocked_destination_is_permanent(options: DeliveryOptions) -> None:
    result = sent(kind=ErrorKind.BLOCKED_DESTINATION)
    assert classify(result, options) == Classification(
        Outcome.PERMANENT, DeadLetterReason.BLOCKED_DESTINATION
    )


@pytest.mark.parametrize(
    "kind",
    [
        ErrorKind.TIMEOUT,
        ErrorKind.CONNECT,
        ErrorKind.DNS,
        ErrorKind.TLS,
        ErrorKind.PROTOCOL,
        ErrorKind.SECRET_UNAVAILABLE,
        ErrorKind.INTERNAL,
    ],
)
@pytest.mark.parametrize("options", [DEFAULT, STRICT])
def test_transport_errors_are_retryable(kind: ErrorKind, options: DeliveryOptions) -> None:
    assert classify(sent(kind=kind), options) == Classification(Outcome.RETRYABLE)


def test_throttled_means_429_or_timeout() -> None:
    assert is_throttled(sent(429, ErrorKind.HTTP_STATUS))
    assert is_throttled(sent(kind=ErrorKind.TIMEOUT))
    assert not is_throttled(sent(503, ErrorKind.HTTP_STATUS))
    assert not is_throttled(sent(kind=ErrorKind.CONNECT))
    assert not is_throttled(sent(200))


# --- backoff --------------------------------------------------------------------------------


def test_explicit_schedule_gives_the_wait_before_the_next_attempt() -> None:
    schedule = RetrySchedule(schedule_seconds=[0, 1, 2, 3], jitter=0)
    assert [next_delay(schedule, n, rng()) for n in (1, 2, 3)] == [1, 2, 3]
    assert next_delay(schedule, 4, rng()) is None


def test_explicit_schedule_repeats_its_last_entry_up_to_max_attempts() -> None:
    schedule = RetrySchedule(schedule_seconds=[0, 1, 7], max_attempts=6, jitter=0)
    assert [next_delay(schedule, n, rng()) for n in range(1, 6)] == [1, 7, 7, 7, 7]
    assert next_delay(schedule, 6, rng()) is None


def test_max_attempts_shorter_than_schedule_ends_early() -> None:
    schedule = RetrySchedule(schedule_seconds=[0, 1, 2, 3, 4], max_attempts=2, jitter=0)
    assert next_delay(schedule, 1, rng()) == 1
    assert next_delay(schedule, 2, rng()) is None


def test_default_schedule_is_the_standard_webhooks_example() -> None:
    schedule = RetrySchedule()
    assert schedule.attempt_budget == 10
    waits = [base_delay(schedule, n) for n in range(1, 10)]
    assert waits == [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]


def test_default_schedule_spans_about_three_days() -> None:
    schedule = RetrySchedule()
    assert schedule.schedule_seconds is not None
    total = sum(schedule.schedule_seconds)
    assert 2.75 * 86400 <= total <= 3.5 * 86400
    # The whole schedule fits in the maximum age even at the top of the jitter band.
    assert total * (1 + schedule.jitter) < schedule.max_age_seconds


def test_exponential_backoff_grows_and_caps() -> None:
    schedule = RetrySchedule(
        schedule_seconds=None,
        initial_interval_seconds=5,
        backoff_coefficient=4,
        max_interval_seconds=100,
        jitter=0,
    )
    assert [next_delay(schedule, n, rng()) for n in range(1, 6)] == [5, 20, 80, 100, 100]


def test_exponential_backoff_budget_defaults_to_ten_attempts() -> None:
    schedule = RetrySchedule(schedule_seconds=None, jitter=0)
    assert schedule.attempt_budget == 10
    assert next_delay(schedule, 9, rng()) == schedule.max_interval_seconds
    assert next_delay(schedule, 10, rng()) is None


def test_exponential_backoff_with_coefficient_one_is_constant() -> None:
    schedule = RetrySchedule(
        schedule_seconds=None, initial_interval_seconds=3, backoff_coefficient=1, jitter=0
    )
    assert {next_delay(schedule, n, rng()) for n in range(1, 10)} == {3}


def test_jitter_is_a_uniform_factor_from_the_given_rng() -> None:
    schedule = RetrySchedule(schedule_seconds=[0, 100], jitter=0.2)
    expected = 100 * random.Random(42).uniform(0.8, 1.2)
    assert next_delay(schedule, 1, random.Random(42)) == pytest.approx(expected)
    # Same seed, same answer: the workflow's replay depends on it.
    assert next_delay(schedule, 1, random.Random(42)) == next_delay(schedule, 1, random.Random(42))


def test_jitter_does_not_touch_an_immediate_retry() -> None:
    schedule = RetrySchedule(schedule_seconds=[0, 0, 0], jitter=1)
    generator = rng(7)
    state = generator.getstate()
    assert next_delay(schedule, 1, generator) == 0
    assert generator.getstate() == state


def test_zero_jitter_draws_nothing() -> None:
    generator = rng(7)
    state = generator.getstate()
    assert next_delay(NO_JITTER, 1, generator) == 5
    assert generator.getstate() == state


@pytest.mark.parametrize("jitter", [0.05, 0.2, 0.5, 1.0])
def test_jittered_delays_stay_within_bounds_over_many_seeds(jitter: float) -> None:
    schedule = RetrySchedule(jitter=jitter)
    assert schedule.schedule_seconds is not None
    seen_low = seen_high = False
    for seed in range(500):
        generator = random.Random(seed)
        for attempts_made in range(1, schedule.attempt_budget):
            base = schedule.schedule_seconds[attempts_made]
            delay = next_delay(schedule, attempts_made, generator)
            assert delay is not None
            assert base * (1 - jitter) <= delay <= base * (1 + jitter)
            seen_low |= delay < base
            seen_high |= delay > base
    # The band is actually used on both sides, not collapsed onto the base.
    assert seen_low
    assert seen_high


def test_jittered_default_schedule_totals_about_three_days() -> None:
    schedule = RetrySchedule()
    for seed in range(200):
        generator = random.Random(seed)
        waits = [next_delay(schedule, n, generator) for n in range(1, schedule.attempt_budget)]
        total = sum(w for w in waits if w is not None)
        assert len(waits) == 9
        assert 0.8 * 272105 <= total <= 1.2 * 272105


def test_throttled_floor_lengthens_short_waits_only() -> None:
    schedule = RetrySchedule(schedule_seconds=[0, 5, 300], jitter=0.2, throttled_min_seconds=60)
    assert next_delay(schedule, 1, rng(), throttled=True) == 60
    long_wait = next_delay(schedule, 2, rng(3), throttled=True)
    assert long_wait == next_delay(schedule, 2, rng(3))
    assert long_wait is not None
    assert long_wait >= 240


def test_throttled_floor_of_zero_changes_nothing() -> None:
    schedule = RetrySchedule(schedule_seconds=[0, 5], jitter=0, throttled_min_seconds=0)
    assert next_delay(schedule, 1, rng(), throttled=True) == 5


def test_retry_after_lengthens_the_wait() -> None:
    assert next_delay(NO_JITTER, 1, rng(), retry_after_seconds=120) == 120


def test_retry_after_never_shortens_the_wait() -> None:
    assert next_delay(NO_JITTER, 2, rng(), retry_after_seconds=10) == 300
    assert next_delay(NO_JITTER, 2, rng(), retry_after_seconds=0) == 300


def test_retry_after_is_capped() -> None:
    schedule = RetrySchedule(schedule_seconds=[0, 5], jitter=0, retry_after_cap_seconds=600)
    assert next_delay(schedule, 1, rng(), retry_after_seconds=10**9) == 600
    # The default cap is a day.
    assert next_delay(NO_JITTER, 1, rng(), retry_after_seconds=10**9) == 86400


def test_retry_after_cap_of_zero_ignores_retry_after() -> None:
    schedule = RetrySchedule(schedule_seconds=[0, 5], jitter=0, retry_after_cap_seconds=0)
    assert next_delay(schedule, 1, rng(), retry_after_seconds=3600) == 5


def test_retry_after_and_throttling_combine_by_max() -> None:
    schedule = RetrySchedule(schedule_seconds=[0, 5], jitter=0, throttled_min_seconds=60)
    assert next_delay(schedule, 1, rng(), retry_after_seconds=30, throttled=True) == 60
    assert next_delay(schedule, 1, rng(), retry_after_seconds=90, throttled=True) == 90


def test_budget_exhaustion_wins_over_retry_after() -> None:
    schedule = RetrySchedule(schedule_seconds=[0, 5], jitter=0)
    assert next_delay(schedule, 2, rng(), retry_after_seconds=1, throttled=True) is None


# --- the decision ---------------------------------------------------------------------------


def run_decide(
    result: SendResult,
    *,
    attempts_made: int = 1,
    options: DeliveryOptions = NO_JITTER_OPTIONS,
    started_at: datetime = T0,
    now: datetime = T0,
) -> Decision:
    return decide(
        result,
        attempts_made=attempts_made,
        options=options,
        started_at=started_at,
        now=now,
        rng=rng(),
    )


def test_decide_delivered_stops() -> None:
    assert run_decide(sent(200)) == Decision(Outcome.DELIVERED)


def test_decide_gone_dead_letters_at_once() -> None:
    assert run_decide(sent(410, ErrorKind.HTTP_STATUS)) == Decision(
        Outcome.PERMANENT, DeadLetterReason.GONE
    )


def test_decide_rejected_dead_letters_at_once() -> None:
    options = DeliveryOptions(retry=NO_JITTER, dead_letter_on_4xx=True)
    assert run_decide(sent(404, ErrorKind.HTTP_STATUS), options=options) == Decision(
        Outcome.PERMANENT, DeadLetterReason.REJECTED
    )


def test_decide_blocked_destination_dead_letters_at_once() -> None:
    decision = run_decide(sent(kind=ErrorKind.BLOCKED_DESTINATION))
    assert decision == Decision(Outcome.PERMANENT, DeadLetterReason.BLOCKED_DESTINATION)


def test_decide_retryable_schedules_the_next_attempt() -> None:
    now = T0 + timedelta(seconds=30)
    decision = run_decide(sent(500, ErrorKind.HTTP_STATUS), attempts_made=2, now=now)
    assert decision == Decision(Outcome.RETRYABLE, next_attempt_at=now + timedelta(seconds=300))


def test_decide_uses_the_jittered_delay_from_its_rng() -> None:
    options = DeliveryOptions()
    decision = decide(
        sent(500, ErrorKind.HTTP_STATUS),
        attempts_made=3,
        options=options,
        started_at=T0,
        now=T0,
        rng=random.Random(9),
    )
    expected = next_delay(options.retry, 3, random.Random(9))
    assert expected is not None
    assert decision.next_attempt_at == T0 + timedelta(seconds=expected)


def test_decide_applies_retry_after_on_503() -> None:
    decision = run_decide(sent(503, ErrorKind.HTTP_STATUS, retry_after=900))
    assert decision.next_attempt_at == T0 + timedelta(seconds=900)


def test_decide_applies_the_throttled_floor_on_429_and_timeout() -> None:
    for result in (sent(429, ErrorKind.HTTP_STATUS), sent(kind=ErrorKind.TIMEOUT)):
        decision = run_decide(result)
        assert decision.next_attempt_at == T0 + timedelta(seconds=60)


def test_decide_exhausted() -> None:
    decision = run_decide(sent(kind=ErrorKind.CONNECT), attempts_made=10)
    assert decision == Decision(Outcome.RETRYABLE, DeadLetterReason.EXHAUSTED)


def test_decide_max_age() -> None:
    options = DeliveryOptions(retry=RetrySchedule(jitter=0, max_age_seconds=3600))
    # Attempt 3 failed 10 minutes in; the next wait (30 min) would still fit.
    fits = run_decide(sent(500), attempts_made=3, options=options, now=T0 + timedelta(minutes=10))
    assert fits.next_attempt_at == T0 + timedelta(minutes=40)
    # Attempt 4's next wait (2 h) would start past the maximum age: dead-letter now.
    too_late = run_decide(sent(500), attempts_made=4, options=options, now=T0 + timedelta(hours=1))
    assert too_late == Decision(Outcome.RETRYABLE, DeadLetterReason.MAX_AGE)


def test_decide_max_age_boundary_is_inclusive() -> None:
    options = DeliveryOptions(
        retry=RetrySchedule(schedule_seconds=[0, 60], jitter=0, max_age_seconds=60)
    )
    decision = run_decide(sent(500), options=options)
    assert decision.next_attempt_at == T0 + timedelta(seconds=60)


def test_decide_max_age_counts_from_this_run() -> None:
    options = DeliveryOptions(retry=RetrySchedule(jitter=0, max_age_seconds=3600))
    now = T0 + timedelta(days=30)
    decision = run_decide(sent(500), attempts_made=1, options=options, started_at=now, now=now)
    assert decision.next_attempt_at == now + timedelta(seconds=5)
