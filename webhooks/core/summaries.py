"""What a delivery says about itself in the Temporal UI: attempt and timer summaries, its
current details and its static details.

Only facts the product chose to show: attempt numbers, status codes, error kinds,
durations, times, ids and a host name. Never the body, a header, a secret, a response
excerpt or the free-text error (it may quote the receiver), so nothing here needs the codec,
though with history encryption on the UI decodes these through it like any payload.

A local activity's summary is fixed when it is scheduled, before its result exists (Temporal
records it on the marker as given); so an attempt's marker names the attempt, and its result
is told by the retry timer that follows it, by the current details and by the attempt table.
"""

from __future__ import annotations

from datetime import datetime

from webhooks.core.models import DeliveryState, ErrorKind, SendResult

_KIND_TEXT = {
    ErrorKind.TIMEOUT: "timed out",
    ErrorKind.CONNECT: "connection failed",
    ErrorKind.DNS: "DNS lookup failed",
    ErrorKind.TLS: "TLS failed",
    ErrorKind.PROTOCOL: "protocol error",
    ErrorKind.BLOCKED_DESTINATION: "destination blocked",
    ErrorKind.SECRET_UNAVAILABLE: "no signing secret",
    ErrorKind.INTERNAL: "internal error",
}


def outcome_text(result: SendResult) -> str:
    """`HTTP 500 in 23 ms`, `timed out in 15000 ms`, `connection failed in 2 ms`."""
    elapsed = f"in {result.duration_ms:.0f} ms"
    if result.status_code is not None:
        return f"HTTP {result.status_code} {elapsed}"
    return f"{_KIND_TEXT.get(result.error_kind or ErrorKind.INTERNAL, 'failed')} {elapsed}"


def cause_text(result: SendResult) -> str:
    """The short cause of a failed attempt: `HTTP 500`, `timed out`."""
    if result.status_code is not None:
        return f"HTTP {result.status_code}"
    return _KIND_TEXT.get(result.error_kind or ErrorKind.INTERNAL, "failure")


def attempt_summary(number: int) -> str:
    """The attempt's local-activity marker: `attempt 3`."""
    return f"attempt {number}"


def when_text(at: datetime, now: datetime) -> str:
    """`14:53:48 UTC`, with the date when it is not today (UTC)."""
    at, now = at.astimezone(now.tzinfo), now
    if at.date() == now.date():
        return f"{at:%H:%M:%S} UTC"
    return f"{at:%Y-%m-%d %H:%M:%S} UTC"


def retry_summary(next_number: int, at: datetime, now: datetime, after: SendResult) -> str:
    """The backoff timer: `retry 4 at 14:53:48 UTC after HTTP 500 in 23 ms`."""
    text = f"retry {next_number} at {when_text(at, now)} after {outcome_text(after)}"
    if after.retry_after_seconds is not None:
        text += f" (Retry-After {after.retry_after_seconds:.0f} s)"
    return text


HELD_PREFIX = "circuit open: "
"""How a held delivery's timer summary begins: `bench.waits` finds the holds by it."""


def held_summary(next_number: int, at: datetime, now: datetime) -> str:
    """The timer of a delivery its endpoint's open circuit holds back."""
    return f"{HELD_PREFIX}attempt {next_number} at {when_text(at, now)}"


def current_details(
    state: DeliveryState,
    *,
    attempts: int,
    last: SendResult | None,
    next_attempt_at: datetime | None,
    now: datetime,
    dead_letter_reason: str | None = None,
) -> str:
    """The delivery's current details (Temporal markdown), updated as it goes."""
    lines = [f"**{state.value}** after {attempts} attempt{'s' if attempts != 1 else ''}"]
    if last is not None:
        lines.append(f"last attempt: {outcome_text(last)}")
    if next_attempt_at is not None:
        lines.append(f"next attempt: {when_text(next_attempt_at, now)}")
    if dead_letter_reason is not None:
        lines.append(f"dead-lettered: {dead_letter_reason}")
    return "\n\n".join(lines)


def static_details(
    *,
    endpoint_id: str,
    event_id: str,
    event_type: str,
    host: str | None = None,
    account_id: str | None = None,
) -> str:
    """Set once at start: who and what this delivery is for (Temporal markdown)."""
    rows = [
        ("account", account_id),
        ("endpoint", endpoint_id),
        ("event", f"{event_id} ({event_type})"),
        ("host", host),
    ]
    return "\n\n".join(f"**{name}**: {value}" for name, value in rows if value)
