"""Pure delivery policy: what an attempt's result means and when to try again.

No I/O and no clock of its own: the workflow passes in `workflow.now()` and
`workflow.random()`, so the same inputs always give the same decision (replay-safe).
The table in `docs/status-codes.md` is this module in prose.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from webhooks.core.models import (
    DeadLetterReason,
    DeliveryOptions,
    ErrorKind,
    Outcome,
    RetrySchedule,
    SendResult,
)

RETRYABLE_4XX = frozenset({408, 425, 429})
"""Client errors that mean "not now" rather than "never"."""
_PERMANENT_KINDS = {
    ErrorKind.BLOCKED_DESTINATION: DeadLetterReason.BLOCKED_DESTINATION,
    ErrorKind.ENDPOINT_DISABLED: DeadLetterReason.ENDPOINT_DISABLED,
    ErrorKind.ENDPOINT_DELETED: DeadLetterReason.ENDPOINT_DELETED,
}
"""Failures that no retry can fix: dead-letter at once."""


@dataclass(frozen=True)
class Classification:
    outcome: Outcome
    reason: DeadLetterReason | None = None


def classify(result: SendResult, options: DeliveryOptions) -> Classification:
    """Map one attempt to delivered, retryable or permanent (with the dead-letter reason)."""
    permanent = _PERMANENT_KINDS.get(result.error_kind) if result.error_kind else None
    if permanent is not None:
        return Classification(Outcome.PERMANENT, permanent)
    code = result.status_code
    if code is None:
        return Classification(Outcome.RETRYABLE)
    if 200 <= code < 300:
        return Classification(Outcome.DELIVERED)
    if code == 410:
        return Classification(Outcome.PERMANENT, DeadLetterReason.GONE)
    if 400 <= code < 500 and code not in RETRYABLE_4XX and options.dead_letter_on_4xx:
        return Classification(Outcome.PERMANENT, DeadLetterReason.REJECTED)
    # 3xx (never followed), 408/425/429, 5xx, other 4xx by default, and anything odd.
    return Classification(Outcome.RETRYABLE)


def is_throttled(result: SendResult) -> bool:
    """A 429 or a timeout: the receiver is overloaded, so back off harder."""
    return result.status_code == 429 or result.error_kind is ErrorKind.TIMEOUT


def base_delay(schedule: RetrySchedule, attempts_made: int) -> float:
    """The un-jittered wait in seconds before attempt `attempts_made + 1` (attempts_made >= 1)."""
    if schedule.schedule_seconds is not None:
        table = schedule.schedule_seconds
        return table[min(attempts_made, len(table) - 1)]
    delay = schedule.initial_interval_seconds * schedule.backoff_coefficient ** (attempts_made - 1)
    return min(delay, schedule.max_interval_seconds)


def next_delay(
    schedule: RetrySchedule,
    attempts_made: int,
    rng: random.Random,
    *,
    retry_after_seconds: float | None = None,
    throttled: bool = False,
) -> float | None:
    """Seconds to wait before the next attempt, or None when the attempt budget is spent.

    Jitter spreads retries of many deliveries so that a recovering endpoint is not hit by
    all of them at once; Retry-After and the throttling floor only ever lengthen the wait.
    """
    if attempts_made >= schedule.attempt_budget:
        return None
    delay = base_delay(schedule, attempts_made)
    if delay > 0 and schedule.jitter > 0:
        delay *= rng.uniform(1 - schedule.jitter, 1 + schedule.jitter)
    if throttled:
        delay = max(delay, schedule.throttled_min_seconds)
    if retry_after_seconds is not None:
        delay = max(delay, min(retry_after_seconds, schedule.retry_after_cap_seconds))
    return delay


@dataclass(frozen=True)
class Decision:
    """What the workflow does after an attempt: stop delivered, dead-letter, or wait."""

    outcome: Outcome
    dead_letter_reason: DeadLetterReason | None = None
    next_attempt_at: datetime | None = None


def decide(
    result: SendResult,
    *,
    attempts_made: int,
    options: DeliveryOptions,
    started_at: datetime,
    now: datetime,
    rng: random.Random,
) -> Decision:
    """Combine classification, backoff and the maximum age into the next step.

    `started_at` is when this delivery run began; the maximum age counts from there, so a
    redelivery from the dead-letter queue gets a fresh budget.
    """
    classification = classify(result, options)
    if classification.outcome is not Outcome.RETRYABLE:
        return Decision(classification.outcome, classification.reason)
    schedule = options.retry
    delay = next_delay(
        schedule,
        attempts_made,
        rng,
        retry_after_seconds=result.retry_after_seconds,
        throttled=is_throttled(result),
    )
    if delay is None:
        return Decision(Outcome.RETRYABLE, DeadLetterReason.EXHAUSTED)
    next_at = now + timedelta(seconds=delay)
    if next_at > started_at + timedelta(seconds=schedule.max_age_seconds):
        return Decision(Outcome.RETRYABLE, DeadLetterReason.MAX_AGE)
    return Decision(Outcome.RETRYABLE, next_attempt_at=next_at)
