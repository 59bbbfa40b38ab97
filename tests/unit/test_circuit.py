"""The endpoint circuit's pure state machine: no Temporal, no clock but the `now` we pass."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from webhooks.core.circuit import (
    BUCKET_SECONDS,
    HOLD_JITTER_SECONDS,
    HOLD_SECONDS,
    LOCAL_TRUST_SECONDS,
    Circuit,
    CircuitConfig,
    CircuitInput,
    CircuitPhase,
    CircuitSnapshot,
    OperatorRequest,
    OutcomeReport,
    PublishedCircuit,
    Signal,
    gate_of,
    signal_of,
)
from webhooks.core.models import ErrorKind, Gate, SendResult

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
"""On a bucket boundary, so the window arithmetic below is exact."""
RATE_ONLY = CircuitConfig(consecutive_failures=None)
"""Trips by failure rate alone."""


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def circuit(config: CircuitConfig | None = None, **state: object) -> Circuit:
    snapshot = CircuitSnapshot.model_validate({"endpoint_id": "ep_1", **state})
    return Circuit(snapshot, config or CircuitConfig())


def phase(c: Circuit) -> CircuitPhase:
    """Read through a call, so mypy does not keep a narrowed phase across transitions."""
    return c.s.phase


def failures(n: int) -> OutcomeReport:
    return OutcomeReport(failures=n, trailing_failures=n)


def successes(n: int) -> OutcomeReport:
    return OutcomeReport(successes=n)


def open_circuit(config: CircuitConfig | None = None, when: datetime = T0) -> Circuit:
    c = circuit(config)
    c.record(failures(c.config.consecutive_failures or c.config.min_requests), when)
    assert phase(c) is CircuitPhase.OPEN
    return c


def half_open_circuit(config: CircuitConfig | None = None) -> Circuit:
    c = open_circuit(config)
    assert c.s.next_probe_at is not None
    c.tick(c.s.next_probe_at)
    assert phase(c) is CircuitPhase.HALF_OPEN
    return c


# --- what counts -------------------------------------------------------------------------


def sent(status: int | None = None, kind: ErrorKind | None = None) -> SendResult:
    return SendResult(started_at=T0, duration_ms=1, status_code=status, error_kind=kind)


@pytest.mark.parametrize("code", [200, 201, 204, 299])
def test_2xx_is_a_success(code: int) -> None:
    assert signal_of(sent(code)) is Signal.SUCCESS


@pytest.mark.parametrize("code", [500, 502, 503, 504, 599, 408, 429])
def test_5xx_408_and_429_are_failures(code: int) -> None:
    assert signal_of(sent(code, ErrorKind.HTTP_STATUS)) is Signal.FAILURE


@pytest.mark.parametrize(
    "kind",
    [ErrorKind.TIMEOUT, ErrorKind.CONNECT, ErrorKind.DNS, ErrorKind.TLS, ErrorKind.PROTOCOL],
)
def test_transport_failures_are_failures(kind: ErrorKind) -> None:
    assert signal_of(sent(None, kind)) is Signal.FAILURE


@pytest.mark.parametrize("code", [400, 401, 403, 404, 409, 422, 301, 302, 100])
def test_other_answers_are_neutral(code: int) -> None:
    """A 4xx (other than 408/429) or a redirect shows the endpoint is up: it never trips."""
    assert signal_of(sent(code, ErrorKind.HTTP_STATUS)) is Signal.NEUTRAL


@pytest.mark.parametrize("kind", [ErrorKind.BLOCKED_DESTINATION, ErrorKind.SECRET_UNAVAILABLE])
def test_our_own_refusals_are_neutral(kind: ErrorKind) -> None:
    """No request was made: it says nothing about the endpoint."""
    assert signal_of(sent(None, kind)) is Signal.NEUTRAL


def test_410_gone_is_gone() -> None:
    assert signal_of(sent(410, ErrorKind.HTTP_STATUS)) is Signal.GONE


def test_empty_report() -> None:
    assert OutcomeReport().empty
    assert OutcomeReport(trailing_failures=0).empty
    assert not OutcomeReport(successes=1).empty
    assert not failures(1).empty
    assert not OutcomeReport(gone=True).empty
    assert not OutcomeReport(probe_succeeded=False).empty


# --- tripping ----------------------------------------------------------------------------


def test_a_fresh_circuit_is_closed_and_lets_everything_through() -> None:
    c = circuit()
    assert phase(c) is CircuitPhase.CLOSED
    assert c.gate(T0) == Gate(allow=True)
    assert c.s.failure_rate() == 0.0
    assert c.s.requests_in_window() == 0


def test_trips_at_70_percent_failures_over_the_window() -> None:
    c = circuit(RATE_ONLY)
    c.record(successes(3), at(0))
    c.record(failures(6), at(30))
    assert phase(c) is CircuitPhase.CLOSED  # 6 of 9: too few requests, and 66%
    c.record(failures(1), at(60))
    assert c.s.failure_rate() == pytest.approx(0.7)
    assert phase(c) is CircuitPhase.OPEN
    assert c.s.opened_at == at(60)
    assert c.s.trips == 1


def test_does_not_trip_below_the_rate() -> None:
    c = circuit(RATE_ONLY)
    c.record(OutcomeReport(successes=31, failures=69, trailing_failures=0), T0)
    assert c.s.failure_rate() == pytest.approx(0.69)
    assert phase(c) is CircuitPhase.CLOSED


def test_does_not_trip_below_the_minimum_number_of_requests() -> None:
    c = circuit(RATE_ONLY)
    c.record(failures(9), T0)
    assert c.s.failure_rate() == 1.0
    assert phase(c) is CircuitPhase.CLOSED
    c.record(failures(1), at(1))
    assert phase(c) is CircuitPhase.OPEN


def test_min_requests_is_configurable() -> None:
    c = circuit(CircuitConfig(consecutive_failures=None, min_requests=2))
    c.record(failures(1), T0)
    assert phase(c) is CircuitPhase.CLOSED
    c.record(failures(1), T0)
    assert phase(c) is CircuitPhase.OPEN


def test_trips_on_consecutive_failures_even_with_a_good_rate() -> None:
    config = CircuitConfig(consecutive_failures=5)
    c = circuit(config)
    c.record(successes(100), T0)
    for i in range(4):
        c.record(failures(1), at(i))
    assert c.s.consecutive_failures == 4
    assert phase(c) is CircuitPhase.CLOSED
    c.record(failures(1), at(5))
    assert phase(c) is CircuitPhase.OPEN


def test_a_success_breaks_the_run_of_failures() -> None:
    c = circuit(CircuitConfig(consecutive_failures=5))
    c.record(failures(4), T0)
    c.record(successes(1), at(1))
    assert c.s.consecutive_failures == 0
    c.record(failures(4), at(2))
    assert phase(c) is CircuitPhase.CLOSED


def test_trailing_failures_of_a_batch_are_the_run_after_its_last_success() -> None:
    c = circuit(CircuitConfig(consecutive_failures=5, min_requests=1000))
    c.record(failures(3), T0)
    # 3 more failures, a success, then 2 failures: the run is 2, not 3 + 5.
    c.record(OutcomeReport(successes=1, failures=5, trailing_failures=2), at(1))
    assert c.s.consecutive_failures == 2
    assert c.s.failing_since == at(1)
    c.record(failures(3), at(2))
    assert phase(c) is CircuitPhase.OPEN


def test_consecutive_trip_can_be_turned_off() -> None:
    c = circuit(CircuitConfig(consecutive_failures=None, min_requests=1000))
    c.record(failures(999), T0)
    assert phase(c) is CircuitPhase.CLOSED


def test_failures_in_the_same_bucket_are_aggregated() -> None:
    c = circuit()
    c.record(failures(1), at(0))
    c.record(successes(2), at(BUCKET_SECONDS - 0.1))
    c.record(failures(1), at(BUCKET_SECONDS))
    assert [(b.start, b.successes, b.failures) for b in c.s.buckets] == [
        (T0, 2, 1),
        (at(BUCKET_SECONDS), 0, 1),
    ]


def test_old_buckets_leave_the_window() -> None:
    c = circuit(RATE_ONLY)  # 300 s window
    c.record(failures(6), T0)
    c.record(successes(4), at(100))
    assert phase(c) is CircuitPhase.CLOSED  # 60%
    c.tick(at(300 + BUCKET_SECONDS - 0.001))
    assert c.s.requests_in_window() == 10  # the first bucket still overlaps the window
    c.tick(at(300 + BUCKET_SECONDS))
    assert c.s.requests_in_window() == 4
    assert c.s.failure_rate() == 0.0
    # 5 of 9 now; with the expired failures it would have been 11 of 15 and tripped.
    c.record(failures(5), at(310))
    assert phase(c) is CircuitPhase.CLOSED
    c.record(failures(5), at(311))
    assert c.s.failure_rate() == pytest.approx(10 / 14)
    assert phase(c) is CircuitPhase.OPEN


def test_window_length_is_configurable() -> None:
    c = circuit(CircuitConfig(window_seconds=20, consecutive_failures=None))
    c.record(failures(9), T0)
    c.record(failures(1), at(30))
    assert c.s.requests_in_window() == 1
    assert phase(c) is CircuitPhase.CLOSED


# --- open, half-open, probes ----------------------------------------------------------


def test_open_holds_everyone_until_the_cooldown_ends() -> None:
    c = open_circuit()
    assert c.s.next_probe_at == T0 + timedelta(seconds=30)
    assert c.gate(at(1)) == Gate(allow=False, retry_at=at(30))
    c.tick(at(29.999))
    assert phase(c) is CircuitPhase.OPEN


def test_open_goes_half_open_at_next_probe_at() -> None:
    c = open_circuit()
    c.tick(at(30))
    assert phase(c) is CircuitPhase.HALF_OPEN


def test_a_due_open_circuit_gates_like_half_open_before_any_tick() -> None:
    c = open_circuit()
    assert c.gate(at(31)) == Gate(allow=False, probe=True, retry_at=at(31))
    assert phase(c) is CircuitPhase.OPEN


def test_half_open_gate_asks_for_a_probe() -> None:
    c = half_open_circuit()
    assert c.gate(at(30)) == Gate(allow=False, probe=True, retry_at=at(30))


def test_one_probe_at_a_time() -> None:
    c = half_open_circuit()
    assert c.acquire_probe(at(30)) == Gate(allow=True, probe=True)
    assert c.s.probe_lease_until == at(90)
    # Everyone else waits for the lease (gate says so too).
    assert c.acquire_probe(at(31)) == Gate(allow=False, retry_at=at(90))
    assert c.gate(at(31)) == Gate(allow=False, probe=True, retry_at=at(90))


def test_a_lost_probe_lease_expires() -> None:
    c = half_open_circuit(CircuitConfig(probe_lease_seconds=10))
    assert c.acquire_probe(at(30)).allow
    assert not c.acquire_probe(at(39.9)).allow
    assert c.gate(at(40)) == Gate(allow=False, probe=True, retry_at=at(40))
    assert c.acquire_probe(at(40)) == Gate(allow=True, probe=True)
    assert c.s.probe_lease_until == at(50)


def test_acquire_probe_outside_half_open_answers_the_gate() -> None:
    assert circuit().acquire_probe(T0) == Gate(allow=True)
    c = open_circuit()
    assert c.acquire_probe(at(1)) == Gate(allow=False, retry_at=at(30))
    c.disable("by hand")
    assert c.acquire_probe(at(1)) == Gate(allow=False, disabled=True)


def test_acquire_probe_moves_a_due_open_circuit_to_half_open() -> None:
    c = open_circuit()
    assert c.acquire_probe(at(30)) == Gate(allow=True, probe=True)
    assert phase(c) is CircuitPhase.HALF_OPEN


def test_probe_success_closes_and_forgets() -> None:
    c = half_open_circuit()
    c.acquire_probe(at(30))
    c.record(OutcomeReport(successes=1, probe_succeeded=True), at(31))
    s = c.s
    assert s.phase is CircuitPhase.CLOSED
    assert (s.trips, s.opened_at, s.next_probe_at, s.probe_lease_until) == (0, None, None, None)
    assert (s.consecutive_failures, s.failing_since, s.buckets) == (0, None, [])
    assert c.gate(at(31)) == Gate(allow=True)


def test_a_probe_that_proved_the_endpoint_up_without_a_2xx_closes() -> None:
    """A 4xx probe counts no success, but the endpoint answered: close, stop the clock."""
    c = half_open_circuit()
    c.record(OutcomeReport(probe_succeeded=True), at(31))
    assert phase(c) is CircuitPhase.CLOSED
    assert c.s.failing_since is None


def test_probe_failure_reopens_with_a_longer_cooldown_and_keeps_the_outage_start() -> None:
    c = half_open_circuit()
    c.acquire_probe(at(30))
    c.record(OutcomeReport(failures=1, trailing_failures=1, probe_succeeded=False), at(31))
    assert phase(c) is CircuitPhase.OPEN
    assert c.s.trips == 2
    assert c.s.next_probe_at == at(31 + 60)
    assert c.s.opened_at == T0  # when the outage began, not the latest re-open
    assert c.s.probe_lease_until is None


def test_a_late_probe_failure_on_a_closed_circuit_changes_nothing() -> None:
    c = circuit()
    c.record(OutcomeReport(probe_succeeded=False), T0)
    assert phase(c) is CircuitPhase.CLOSED
    assert c.s.trips == 0


def test_any_success_closes_an_open_circuit() -> None:
    """A success proves the endpoint is up, whoever sent it."""
    c = open_circuit()
    c.record(successes(1), at(5))
    assert phase(c) is CircuitPhase.CLOSED


def test_failures_while_open_are_counted_but_do_not_reopen() -> None:
    c = open_circuit()
    c.record(failures(3), at(5))
    assert c.s.trips == 1
    assert c.s.next_probe_at == at(30)


def test_cooldown_grows_per_trip_and_is_capped() -> None:
    config = CircuitConfig(cooldown_seconds=30, cooldown_multiplier=2, max_cooldown_seconds=200)
    c = half_open_circuit(config)
    cooldowns = [c.current_cooldown().total_seconds()]
    now = T0
    for _ in range(4):
        assert c.s.next_probe_at is not None
        now = c.s.next_probe_at
        c.tick(now)
        c.record(OutcomeReport(probe_succeeded=False), now)
        cooldowns.append(c.current_cooldown().total_seconds())
        assert c.s.next_probe_at == now + c.current_cooldown()
    assert cooldowns == [30, 60, 120, 200, 200]


def test_cooldown_before_any_trip_is_the_base_cooldown() -> None:
    assert circuit(CircuitConfig(cooldown_seconds=7)).current_cooldown() == timedelta(seconds=7)


def test_a_closed_circuit_trips_again_from_scratch() -> None:
    c = half_open_circuit()
    c.record(OutcomeReport(successes=1, probe_succeeded=True), at(31))
    c.record(failures(20), at(40))
    assert c.s.trips == 1
    assert c.s.opened_at == at(40)
    assert c.s.next_probe_at == at(70)


# --- auto-disable --------------------------------------------------------------------------


def test_disabled_after_failing_continuously_for_five_days() -> None:
    c = circuit()
    c.record(failures(1), T0)
    assert c.s.failing_since == T0
    c.record(failures(1), at(86400))
    assert c.s.failing_since == T0  # still the first failure of the run
    c.tick(T0 + timedelta(days=5) - timedelta(seconds=1))
    assert phase(c) is CircuitPhase.CLOSED
    c.tick(T0 + timedelta(days=5))
    assert phase(c) is CircuitPhase.DISABLED
    assert c.s.disabled_reason == "failing continuously for 5 days"
    assert c.gate(T0 + timedelta(days=6)) == Gate(allow=False, disabled=True)


def test_open_circuit_is_disabled_too_and_forgets_its_probe() -> None:
    c = half_open_circuit(CircuitConfig(disable_after_seconds=40))
    c.acquire_probe(at(30))
    c.tick(at(40))
    assert phase(c) is CircuitPhase.DISABLED
    assert c.s.disabled_reason == "failing continuously for 40 seconds"
    assert (c.s.next_probe_at, c.s.probe_lease_until) == (None, None)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(90, "1.5 minutes"), (7200, "2 hours"), (86400 * 1.5, "1.5 days"), (0.5, "0.5 seconds")],
)
def test_disable_reason_names_the_period(seconds: float, text: str) -> None:
    c = circuit(CircuitConfig(disable_after_seconds=seconds))
    c.record(failures(1), T0)
    c.tick(at(seconds))
    assert c.s.disabled_reason == f"failing continuously for {text}"


def test_a_success_resets_the_disable_clock() -> None:
    c = circuit(CircuitConfig(disable_after_seconds=100))
    c.record(failures(1), T0)
    c.record(successes(1), at(50))
    assert c.s.failing_since is None
    c.record(failures(1), at(60))
    assert c.s.failing_since == at(60)
    c.tick(at(159))
    assert phase(c) is CircuitPhase.CLOSED
    c.tick(at(160))
    assert phase(c) is CircuitPhase.DISABLED


def test_410_gone_disables_at_once() -> None:
    c = circuit()
    c.record(OutcomeReport(gone=True, failures=2, trailing_failures=2), T0)
    assert phase(c) is CircuitPhase.DISABLED
    assert c.s.disabled_reason == "endpoint answered 410 Gone"
    assert c.s.buckets == []  # nothing else in the report matters any more


def test_a_disabled_circuit_ignores_reports_and_time() -> None:
    c = circuit()
    c.disable("by hand")
    c.record(successes(5), T0)
    c.record(OutcomeReport(probe_succeeded=True), T0)
    c.tick(T0 + timedelta(days=30))
    assert phase(c) is CircuitPhase.DISABLED
    assert c.s.reports_received == 2
    assert c.s.buckets == []


# --- operators ------------------------------------------------------------------------------


def test_reset_closes_and_forgets_everything() -> None:
    c = half_open_circuit()
    c.acquire_probe(at(30))
    c.reset()
    s = c.s
    assert s.phase is CircuitPhase.CLOSED
    assert (s.trips, s.opened_at, s.next_probe_at, s.probe_lease_until) == (0, None, None, None)
    assert (s.buckets, s.consecutive_failures, s.failing_since) == ([], 0, None)


def test_disable_from_any_phase_and_enable() -> None:
    for c in (circuit(), open_circuit(), half_open_circuit()):
        c.disable("customer asked")
        assert phase(c) is CircuitPhase.DISABLED
        assert c.s.disabled_reason == "customer asked"
        assert c.s.next_probe_at is None
        c.reset()
        assert phase(c) is CircuitPhase.CLOSED
        assert c.s.disabled_reason is None
        assert c.gate(T0) == Gate(allow=True)


def test_reset_of_a_disabled_circuit_enables_it() -> None:
    c = circuit()
    c.disable("by hand")
    c.reset()
    assert phase(c) is CircuitPhase.CLOSED
    assert c.s.disabled_reason is None


def test_an_enabled_endpoint_must_fail_again_from_scratch_to_be_disabled() -> None:
    c = circuit(CircuitConfig(disable_after_seconds=10))
    c.record(failures(1), T0)
    c.tick(at(10))
    assert phase(c) is CircuitPhase.DISABLED
    c.reset()
    c.tick(at(100))
    assert phase(c) is CircuitPhase.CLOSED
    c.record(failures(1), at(100))
    c.tick(at(109))
    assert phase(c) is CircuitPhase.CLOSED


# --- models ------------------------------------------------------------------------------------


def test_reports_received_counts_every_report() -> None:
    c = circuit()
    for _ in range(3):
        c.record(successes(1), T0)
    assert c.s.reports_received == 3


def test_snapshot_round_trips_through_json() -> None:
    c = half_open_circuit()
    c.acquire_probe(at(30))
    again = CircuitSnapshot.model_validate_json(c.s.model_dump_json())
    assert again == c.s


def test_config_defaults_follow_convoy_and_svix() -> None:
    config = CircuitConfig()
    assert config.failure_rate_threshold == 0.7
    assert config.window_seconds == 300
    assert config.min_requests == 10
    assert config.cooldown_seconds == 30
    assert config.disable_after_seconds == 5 * 86400


def documented_defaults() -> dict[str, float]:
    """The defaults table of docs/circuit.md: `| `name` | default | meaning |`."""
    text = (Path(__file__).parents[2] / "docs" / "circuit.md").read_text()
    table = text.split("**Defaults**", 1)[1].split("\n\n", 2)[1]
    rows = re.findall(r"^\| `(\w+)` \| ([\d.]+)", table, flags=re.MULTILINE)
    return {name: float(value) for name, value in rows}


def test_every_default_is_the_documented_one() -> None:
    documented = documented_defaults()
    assert set(documented) == set(CircuitConfig.model_fields), "a setting missing from the docs"
    assert CircuitConfig().model_dump() == documented
    assert BUCKET_SECONDS == 10  # "10 s buckets"


@pytest.mark.parametrize(
    "bad",
    [
        {"failure_rate_threshold": 0},
        {"failure_rate_threshold": 1.1},
        {"min_requests": 0},
        {"cooldown_multiplier": 0.5},
        {"max_history_events": 10},
        {"no_such_option": 1},
    ],
)
def test_config_is_validated(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        CircuitConfig.model_validate(bad)


def test_input_and_operator_request_defaults() -> None:
    assert CircuitInput(endpoint_id="ep_1") == CircuitInput(
        endpoint_id="ep_1", config=CircuitConfig(), snapshot=None
    )
    assert OperatorRequest() == OperatorRequest(requested_by="unknown", reason="")


# --- the gate over the published verdict -----------------------------------------------------


def published(phase: CircuitPhase, changed: float = 0, **fields: object) -> PublishedCircuit:
    return PublishedCircuit.model_validate(
        {"endpoint_id": "ep_1", "phase": phase, "changed_at": at(changed), **fields}
    )


HOLD = timedelta(seconds=HOLD_SECONDS)


def test_no_verdict_and_no_local_trip_lets_it_go() -> None:
    assert gate_of(None, local_tripped_at=None, now=T0) == Gate(allow=True)


def test_a_disabled_verdict_refuses() -> None:
    verdict = published(CircuitPhase.DISABLED, reason="ops")
    assert gate_of(verdict, local_tripped_at=None, now=T0) == Gate(allow=False, disabled=True)


def test_an_open_verdict_holds_until_woken_and_offers_the_probe_when_due() -> None:
    verdict = published(CircuitPhase.OPEN, next_probe_at=at(30))
    assert gate_of(verdict, local_tripped_at=None, now=at(10)) == Gate(
        allow=False, retry_at=at(10) + HOLD
    )
    assert gate_of(verdict, local_tripped_at=None, now=at(30)) == Gate(
        allow=False, probe=True, retry_at=at(30) + HOLD
    )
    half_open = published(CircuitPhase.HALF_OPEN)
    assert gate_of(half_open, local_tripped_at=None, now=at(1)).probe


def test_a_local_trip_holds_only_until_the_circuit_has_spoken_or_had_its_chance() -> None:
    trip = at(5)
    trusted = trip + timedelta(seconds=LOCAL_TRUST_SECONDS)
    # The hold ends early enough that the delivery's jitter keeps it inside the trust.
    wake = trusted - timedelta(seconds=HOLD_JITTER_SECONDS)
    assert gate_of(None, local_tripped_at=trip, now=at(6)) == Gate(allow=False, retry_at=wake)
    older = published(CircuitPhase.CLOSED, changed=1)
    assert gate_of(older, local_tripped_at=trip, now=at(6)) == Gate(allow=False, retry_at=wake)
    late = trusted - timedelta(seconds=1)
    assert gate_of(None, local_tripped_at=trip, now=late) == Gate(allow=False, retry_at=late)
    newer = published(CircuitPhase.CLOSED, changed=6)
    assert gate_of(newer, local_tripped_at=trip, now=at(7)) == Gate(allow=True)
    assert gate_of(None, local_tripped_at=trip, now=trusted) == Gate(allow=True)


def test_a_verdict_is_the_snapshot_at_a_moment() -> None:
    c = circuit()
    c.disable("ops")
    verdict = PublishedCircuit.of(c.s, at(3))
    assert verdict.phase is CircuitPhase.DISABLED
    assert verdict.reason == "ops"
    assert verdict.changed_at == at(3)
    assert verdict.same_verdict(PublishedCircuit.of(c.s, at(9)))
    assert not verdict.same_verdict(None)
    c.reset()
    assert not verdict.same_verdict(PublishedCircuit.of(c.s, at(9)))
