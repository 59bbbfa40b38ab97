"""The per-endpoint circuit breaker as a pure state machine (no I/O, no clock of its own).

    closed --(>= 70% failures over 5 min with >= 10 attempts, or N in a row)--> open
    open --(cooldown: 30 s, doubling per trip, capped)--> half-open
    half-open --(one probe at a time: success)--> closed
    half-open --(probe failure)--> open (longer cooldown)
    any --(failing continuously for 5 days, or 410 Gone, or an operator)--> disabled

Only transport failures, timeouts, 5xx and 429 count as failures; any other answer
(including a 4xx other than 408/429) shows the endpoint is up. The `EndpointCircuit`
workflow runs one of these per endpoint, and each worker runs a local copy seeded from it
(`activities/circuit_view.py`), so both decide with the same code.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from webhooks.core.models import ErrorKind, Gate, SendResult

BUCKET_SECONDS = 10
"""Failure-rate window granularity."""
HOLD_SECONDS = 3600.0
"""A delivery held by an open circuit sleeps this long at most (a safety net): the circuit
itself wakes one for each probe and all of them when it closes or is disabled."""
LOCAL_TRUST_SECONDS = 8.0
"""How long a worker trusts its own local trip over a circuit that still says closed: the
circuit hears of the failures within a flush interval and publishes its verdict within a
few seconds; past this the circuit wins. A hold's timer starts only when the workflow task
that asked completes, so on a loaded worker it ends up to a second or two later: 8 s keeps
the promise of at most about 10 s on a closed circuit (the fault campaign saw 10.4 s at 10)."""
HOLD_JITTER_SECONDS = 5.0
"""A held delivery wakes up to this long after its gate's time, so waiters do not stampede.
A local trip's hold ends this much before its trust does, so that jittered, it still ends
within LOCAL_TRUST_SECONDS."""


class CircuitPhase(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    DISABLED = "disabled"


class CircuitConfig(BaseModel):
    """Defaults after Convoy (rate window) and Svix (disable after 5 days)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    failure_rate_threshold: float = Field(default=0.7, gt=0, le=1)
    window_seconds: float = Field(default=300, gt=0)
    min_requests: int = Field(default=10, ge=1)
    consecutive_failures: int | None = Field(default=20, ge=1)
    cooldown_seconds: float = Field(default=30, gt=0)
    cooldown_multiplier: float = Field(default=2, ge=1)
    max_cooldown_seconds: float = Field(default=600, gt=0)
    probe_lease_seconds: float = Field(default=60, gt=0)
    """A granted probe that reports nothing for this long is assumed lost."""
    disable_after_seconds: float = Field(default=5 * 86400, gt=0)
    settle_seconds: float = Field(default=5, ge=0)
    """After publishing a close or a disable, the circuit waits this long before waking
    held deliveries, so every worker's registry cache (2 s TTL) has seen the change."""
    max_history_events: int = Field(default=5_000, ge=100)
    """The circuit workflow continues-as-new past this many history events."""


class Signal(StrEnum):
    """How an attempt counts for the circuit."""

    SUCCESS = "success"
    FAILURE = "failure"
    NEUTRAL = "neutral"
    GONE = "gone"


_OUR_REFUSALS = frozenset(
    {
        ErrorKind.BLOCKED_DESTINATION,
        ErrorKind.SECRET_UNAVAILABLE,
        ErrorKind.ENDPOINT_DISABLED,
        ErrorKind.ENDPOINT_DELETED,
        ErrorKind.REGISTRY_UNAVAILABLE,
    }
)


def signal_of(result: SendResult) -> Signal:
    code = result.status_code
    if code == 410:
        return Signal.GONE
    if code is None:
        # Our own refusals say nothing about the endpoint's health.
        if result.error_kind in _OUR_REFUSALS:
            return Signal.NEUTRAL
        return Signal.FAILURE
    if code >= 500 or code in (408, 429):
        return Signal.FAILURE
    if 200 <= code < 300:
        return Signal.SUCCESS
    return Signal.NEUTRAL


class OutcomeReport(BaseModel):
    """What one worker saw of one endpoint since its last report (aggregated)."""

    model_config = ConfigDict(extra="forbid")

    successes: int = 0
    failures: int = 0
    trailing_failures: int = 0
    """Failures after the last success in this batch (all of them if there was none)."""
    gone: bool = False
    probe_succeeded: bool | None = None
    """Set when the batch includes the result of a probe this worker was granted."""

    @property
    def empty(self) -> bool:
        return not (self.successes or self.failures or self.gone) and self.probe_succeeded is None


class Bucket(BaseModel):
    start: datetime
    successes: int = 0
    failures: int = 0


class CircuitSnapshot(BaseModel):
    """The whole state: what `state` answers and what continue-as-new carries."""

    endpoint_id: str
    phase: CircuitPhase = CircuitPhase.CLOSED
    buckets: list[Bucket] = []
    consecutive_failures: int = 0
    failing_since: datetime | None = None
    opened_at: datetime | None = None
    next_probe_at: datetime | None = None
    probe_lease_until: datetime | None = None
    trips: int = 0
    disabled_reason: str | None = None
    signals_received: int = 0
    reports_received: int = 0
    wake_pending: CircuitPhase | None = None
    """A close or disable whose held deliveries are still to be woken (carried across
    continue-as-new, so a wake cut short by it runs again in the next run)."""
    nudged_at: datetime | None = None
    """When the circuit last woke one held delivery to be the probe."""

    def requests_in_window(self) -> int:
        return sum(b.successes + b.failures for b in self.buckets)

    def failure_rate(self) -> float:
        total = self.requests_in_window()
        return sum(b.failures for b in self.buckets) / total if total else 0.0


class Circuit:
    """Mutable wrapper around a snapshot; every method takes `now` explicitly."""

    def __init__(self, snapshot: CircuitSnapshot, config: CircuitConfig) -> None:
        self.s = snapshot
        self.config = config

    # -- inputs -------------------------------------------------------------------------

    def record(self, report: OutcomeReport, now: datetime) -> None:
        s = self.s
        s.reports_received += 1
        if s.phase is CircuitPhase.DISABLED:
            return
        if report.gone:
            self.disable("endpoint answered 410 Gone")
            return
        self._count(report, now)
        if report.successes or report.probe_succeeded:
            if s.phase is not CircuitPhase.CLOSED:
                self._close()
        elif report.probe_succeeded is False and s.phase is not CircuitPhase.CLOSED:
            self._open(now)
        self.tick(now)

    def tick(self, now: datetime) -> None:
        """Apply what time alone changes: trips, the end of a cooldown, auto-disable."""
        s, c = self.s, self.config
        self._expire_buckets(now)
        if s.phase is CircuitPhase.DISABLED:
            return
        if s.failing_since and now - s.failing_since >= timedelta(seconds=c.disable_after_seconds):
            self.disable(f"failing continuously for {_duration(c.disable_after_seconds)}")
            return
        if s.phase is CircuitPhase.CLOSED and self._should_trip():
            self._open(now)
        elif s.phase is CircuitPhase.OPEN and s.next_probe_at and now >= s.next_probe_at:
            s.phase = CircuitPhase.HALF_OPEN

    def acquire_probe(self, now: datetime) -> Gate:
        """Grant one probe at a time while half-open; everyone else waits."""
        self.tick(now)
        s = self.s
        if s.phase is not CircuitPhase.HALF_OPEN:
            return self.gate(now)
        if s.probe_lease_until and now < s.probe_lease_until:
            return Gate(allow=False, retry_at=s.probe_lease_until)
        s.probe_lease_until = now + timedelta(seconds=self.config.probe_lease_seconds)
        return Gate(allow=True, probe=True)

    def reset(self) -> None:
        """Close and forget every failure; a disabled endpoint is enabled again too."""
        self._close()
        self.s.disabled_reason = None

    def disable(self, reason: str) -> None:
        self.s.phase = CircuitPhase.DISABLED
        self.s.disabled_reason = reason
        self.s.next_probe_at = None
        self.s.probe_lease_until = None

    # -- outputs ------------------------------------------------------------------------

    def gate(self, now: datetime) -> Gate:
        """What a delivery may do now, without asking for a probe."""
        s = self.s
        if s.phase is CircuitPhase.CLOSED:
            return Gate(allow=True)
        if s.phase is CircuitPhase.DISABLED:
            return Gate(allow=False, disabled=True)
        if s.phase is CircuitPhase.OPEN and s.next_probe_at and now < s.next_probe_at:
            return Gate(allow=False, retry_at=s.next_probe_at)
        # Half-open (or due): only a granted probe may go.
        retry_at = s.probe_lease_until if s.probe_lease_until and now < s.probe_lease_until else now
        return Gate(allow=False, probe=True, retry_at=retry_at)

    def current_cooldown(self) -> timedelta:
        c = self.config
        trips = max(self.s.trips, 1)
        seconds = c.cooldown_seconds * c.cooldown_multiplier ** (trips - 1)
        return timedelta(seconds=min(seconds, c.max_cooldown_seconds))

    # -- internals ----------------------------------------------------------------------

    def _count(self, report: OutcomeReport, now: datetime) -> None:
        s = self.s
        start = now - timedelta(seconds=now.timestamp() % BUCKET_SECONDS)
        if not s.buckets or s.buckets[-1].start != start:
            s.buckets.append(Bucket(start=start))
        s.buckets[-1].successes += report.successes
        s.buckets[-1].failures += report.failures
        if report.successes:
            s.consecutive_failures = report.trailing_failures
            s.failing_since = now if report.trailing_failures else None
        elif report.failures:
            s.consecutive_failures += report.failures
            s.failing_since = s.failing_since or now

    def _expire_buckets(self, now: datetime) -> None:
        horizon = now - timedelta(seconds=self.config.window_seconds)
        self.s.buckets = [
            b for b in self.s.buckets if b.start + timedelta(seconds=BUCKET_SECONDS) > horizon
        ]

    def _should_trip(self) -> bool:
        s, c = self.s, self.config
        if c.consecutive_failures is not None and s.consecutive_failures >= c.consecutive_failures:
            return True
        return (
            s.requests_in_window() >= c.min_requests
            and s.failure_rate() >= c.failure_rate_threshold
        )

    def _open(self, now: datetime) -> None:
        s = self.s
        s.phase = CircuitPhase.OPEN
        s.trips += 1
        s.opened_at = s.opened_at or now  # When this outage began, not the latest re-open.
        s.next_probe_at = now + self.current_cooldown()
        s.probe_lease_until = None

    def _close(self) -> None:
        s = self.s
        s.phase = CircuitPhase.CLOSED
        s.trips = 0
        s.opened_at = None
        s.next_probe_at = None
        s.probe_lease_until = None
        s.consecutive_failures = 0
        # Forget the failures that opened it; otherwise it would trip again at once. A
        # closed circuit is not failing (a probe may succeed with a 4xx: no success counted).
        s.buckets = []
        s.failing_since = None


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} seconds"


class PublishedCircuit(BaseModel):
    """The circuit's verdict as the `EndpointCircuit` workflow writes it to the registry.

    Every worker's gate reads it through the registry cache (the same short TTL as the
    URL): it is the authoritative phase. `changed_at` (workflow time) orders writes, so
    a late retry of an older write never overwrites a newer one."""

    endpoint_id: str
    phase: CircuitPhase
    next_probe_at: datetime | None = None
    reason: str | None = None
    trips: int = 0
    opened_at: datetime | None = None
    changed_at: datetime

    @classmethod
    def of(cls, snapshot: CircuitSnapshot, now: datetime) -> PublishedCircuit:
        return cls(
            endpoint_id=snapshot.endpoint_id,
            phase=snapshot.phase,
            next_probe_at=snapshot.next_probe_at,
            reason=snapshot.disabled_reason,
            trips=snapshot.trips,
            opened_at=snapshot.opened_at,
            changed_at=now,
        )

    def same_verdict(self, other: PublishedCircuit | None) -> bool:
        """Whether publishing `self` after `other` would change what gates decide."""
        return other is not None and self.model_dump(exclude={"changed_at"}) == (
            other.model_dump(exclude={"changed_at"})
        )


class CircuitInput(BaseModel):
    """The input of `EndpointCircuit`."""

    endpoint_id: str
    config: CircuitConfig = CircuitConfig()
    snapshot: CircuitSnapshot | None = None
    """Carried across continue-as-new."""
    control_task_queue: str | None = None
    """Where the circuit and its activities run (continue-as-new moves an older circuit
    there); None: the task queue it was started on."""
    published: PublishedCircuit | None = None
    """Carried across continue-as-new with `snapshot`: the verdict the previous run
    published (None: none), so the new run knows what the registry holds."""


def gate_of(
    published: PublishedCircuit | None,
    *,
    local_tripped_at: datetime | None,
    now: datetime,
) -> Gate:
    """What a delivery may do, from the circuit's published verdict and this worker's own
    recent trip (None: the local copy is closed).

    - disabled: refuse (the delivery dead-letters);
    - open, cooling down: hold (the circuit wakes it; HOLD_SECONDS is the safety net);
    - open and due, or half-open: it may take the probe lease (`probe=True`), else hold;
    - closed or unknown: go, unless this worker tripped after the circuit last spoke and
      within LOCAL_TRUST_SECONDS: then hold (jitter included) no longer than that, for
      the circuit's verdict.
    """
    hold = now + timedelta(seconds=HOLD_SECONDS)
    if published is not None and published.phase is CircuitPhase.DISABLED:
        return Gate(allow=False, disabled=True)
    if published is not None and published.phase is not CircuitPhase.CLOSED:
        if published.next_probe_at is not None and now < published.next_probe_at:
            return Gate(allow=False, retry_at=hold)
        return Gate(allow=False, probe=True, retry_at=hold)
    if local_tripped_at is not None and (
        published is None or published.changed_at < local_tripped_at
    ):
        trusted_until = local_tripped_at + timedelta(seconds=LOCAL_TRUST_SECONDS)
        if now < trusted_until:
            jittered = trusted_until - timedelta(seconds=HOLD_JITTER_SECONDS)
            return Gate(allow=False, retry_at=max(now, jittered))
    return Gate(allow=True)


class OperatorRequest(BaseModel):
    """Optional argument of the circuit's `reset`, `disable` and `enable` signals."""

    requested_by: str = "unknown"
    reason: str = ""
