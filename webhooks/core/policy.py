"""Pure delivery policy: what an attempt's result means and when to try again.

No I/O and no clock of its own: the workflow passes in `workflow.now()` and
`workflow.random()`, so the same inputs always give the same decision (replay-safe).
The table in `docs/status-codes.md` is this module in prose.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from webhooks.core.ids import delivery_id as derived_delivery_id
from webhooks.core.models import (
    Attempt,
    AttemptsSummary,
    DeadLetterReason,
    DeliveryOptions,
    DeliveryRequest,
    ErrorKind,
    Outcome,
    RetrySchedule,
    SendResult,
)

MAX_ATTEMPTS = 100
"""Attempts per run; also the longest `schedule_seconds`."""
MIN_RETRY_WAIT_SECONDS = 0.1
"""The shortest wait between two attempts (only the first attempt may be immediate)."""
MAX_AGE_SECONDS = 7 * 86400
"""The longest `max_age_seconds`, and so the longest wait: a run's timers and circuit
holds stay well below Temporal's 10,240-event history warning."""
MAX_RETENTION_SECONDS = 180 * 86400
"""The longest a dead letter waits for an operator."""
MAX_CARRIED_ATTEMPTS = 50
"""Attempts of earlier runs a redelivery carries one by one; older ones are counted."""
MAX_EXCERPT_BYTES = 2048
"""A response excerpt kept in the attempt table (UTF-8), whatever the worker read."""
MAX_ERROR_CHARS = 500
"""An attempt's error text kept in the attempt table."""
MAX_HTTP_TIMEOUT_SECONDS = 120.0
"""The longest total HTTP timeout a worker may be configured with (`Settings`)."""
SEND_MARGIN_SECONDS = 30.0
"""Registry lookup, DNS and connect on top of the HTTP timeout, within one attempt."""


def input_problems(request: DeliveryRequest, workflow_id: str | None = None) -> list[str]:
    """Why a delivery input is beyond the bounds that keep every delivery inside Temporal's
    limits, or not a delivery at all; empty when it is fine. The publisher refuses such an
    input; the workflow dead-letters it (`invalid_input`)."""
    problems: list[str] = []
    expected = derived_delivery_id(request.endpoint_id, request.event_id)
    if request.delivery_id != expected:
        problems.append(
            f"delivery_id {request.delivery_id!r} is not derived from endpoint_id and "
            f"event_id (expected {expected!r}; docs/contract.md#ids)"
        )
    if workflow_id is not None and workflow_id != request.delivery_id:
        problems.append(f"workflow id {workflow_id!r} is not the delivery_id")
    options = request.options
    problems += schedule_problems(options.retry)
    if options.dead_letter_retention_seconds > MAX_RETENTION_SECONDS:
        problems.append(
            f"dead_letter_retention_seconds is above the maximum of {MAX_RETENTION_SECONDS:g}"
        )
    if len(request.prior_attempts) > MAX_CARRIED_ATTEMPTS:
        problems.append(f"prior_attempts holds more than {MAX_CARRIED_ATTEMPTS} attempts")
    return problems


def schedule_problems(schedule: RetrySchedule) -> list[str]:
    """`input_problems` of a retry schedule alone (also checked on redelivery)."""
    problems: list[str] = []
    waits = schedule.schedule_seconds
    if waits is not None:
        if len(waits) > MAX_ATTEMPTS:
            problems.append(f"schedule_seconds has {len(waits)} entries; at most {MAX_ATTEMPTS}")
        if any(w < MIN_RETRY_WAIT_SECONDS for w in waits[1:]):
            problems.append(
                f"schedule_seconds waits less than {MIN_RETRY_WAIT_SECONDS:g} s between "
                "attempts (only the first entry may be 0)"
            )
        if any(w > MAX_AGE_SECONDS for w in waits):
            problems.append(f"schedule_seconds waits longer than {MAX_AGE_SECONDS:g} s")
    elif schedule.initial_interval_seconds < MIN_RETRY_WAIT_SECONDS:
        problems.append(f"initial_interval_seconds is below {MIN_RETRY_WAIT_SECONDS:g}")
    if schedule.max_attempts is not None and schedule.max_attempts > MAX_ATTEMPTS:
        problems.append(f"max_attempts is above {MAX_ATTEMPTS}")
    for name in ("max_age_seconds", "max_interval_seconds", "retry_after_cap_seconds"):
        if getattr(schedule, name) > MAX_AGE_SECONDS:
            problems.append(f"{name} is above the maximum of {MAX_AGE_SECONDS:g}")
    if schedule.throttled_min_seconds > MAX_AGE_SECONDS:
        problems.append(f"throttled_min_seconds is above the maximum of {MAX_AGE_SECONDS:g}")
    return problems


def kept_attempt(attempt: Attempt) -> Attempt:
    """The attempt as the table keeps it: excerpt and error cut to their caps."""
    excerpt, error = attempt.response_excerpt, attempt.error
    if excerpt is not None and len(excerpt.encode()) > MAX_EXCERPT_BYTES:
        excerpt = excerpt.encode()[:MAX_EXCERPT_BYTES].decode(errors="ignore")
    if error is not None and len(error) > MAX_ERROR_CHARS:
        error = error[:MAX_ERROR_CHARS]
    if excerpt is attempt.response_excerpt and error is attempt.error:
        return attempt
    return attempt.model_copy(update={"response_excerpt": excerpt, "error": error})


def carried_attempts(
    attempts: list[Attempt], earlier: AttemptsSummary | None
) -> tuple[list[Attempt], AttemptsSummary | None]:
    """What a redelivery carries of its runs' attempts: the newest `MAX_CARRIED_ATTEMPTS`
    one by one, the rest added to the summary of those dropped before."""
    if len(attempts) <= MAX_CARRIED_ATTEMPTS:
        return attempts, earlier
    dropped, kept = attempts[:-MAX_CARRIED_ATTEMPTS], attempts[-MAX_CARRIED_ATTEMPTS:]
    starts = [a.started_at for a in dropped]
    summary = AttemptsSummary(
        count=len(dropped) + (earlier.count if earlier else 0),
        first_started_at=(earlier.first_started_at if earlier else None) or min(starts),
        last_started_at=max(starts),
        delivered=sum(a.outcome is Outcome.DELIVERED for a in dropped)
        + (earlier.delivered if earlier else 0),
    )
    return kept, summary


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
