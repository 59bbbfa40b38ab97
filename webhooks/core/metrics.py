"""The product's Prometheus metrics: one catalogue of names, kinds, labels and buckets.

Workflows, activities and the worker emit them through Temporal's metric meters; the
Grafana dashboard and the alert rules in `deploy/` may reference only these (and the SDK's
own `temporal_*` metrics), which `tests/unit/test_deploy_kit.py` checks. No label ever
holds an id, an account, a URL or an event type: every label's values are a small fixed set.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    COUNTER = "counter"
    HISTOGRAM = "histogram"
    GAUGE = "gauge"


@dataclass(frozen=True)
class Metric:
    name: str
    kind: Kind
    description: str
    labels: tuple[str, ...] = ()
    unit: str = "1"
    buckets: tuple[float, ...] = ()
    """Histogram bucket bounds (seconds); the runtime's defaults are milliseconds."""

    def series(self) -> tuple[str, ...]:
        """The names Prometheus exposes for it (a histogram has three)."""
        if self.kind is Kind.HISTOGRAM:
            return tuple(f"{self.name}_{s}" for s in ("bucket", "sum", "count"))
        return (self.name,)


ATTEMPT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60)
LATENCY_BUCKETS = (
    *(0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    *(300, 1800, 3600, 7200, 18000, 36000, 86400, 172800, 259200, 345600),
)
"""Milliseconds (the success path) up to the four-day maximum age of a delivery."""

SLO_LATENCY_SECONDS = 0.1
"""The delivery-latency objective of docs/benchmarks.md: p99 <= 100 ms publish -> receiver.
Also a bucket bound of `FIRST_ATTEMPT_DELAY`, so the burn-rate rules can count under it."""

ATTEMPTS = Metric(
    "webhooks_attempts_total",
    Kind.COUNTER,
    "HTTP attempts made, by outcome, error kind and status class",
    ("outcome", "error_kind", "status_class"),
)
ATTEMPT_DURATION = Metric(
    "webhooks_attempt_duration_seconds",
    Kind.HISTOGRAM,
    "Time of one HTTP attempt: connect, send, read the capped response",
    ("outcome",),
    unit="s",
    buckets=ATTEMPT_BUCKETS,
)
DELIVERY_LATENCY = Metric(
    "webhooks_delivery_latency_seconds",
    Kind.HISTOGRAM,
    "Publish to the customer's 2xx, or to the dead letter",
    ("outcome",),
    unit="s",
    buckets=LATENCY_BUCKETS,
)
FIRST_ATTEMPT_DELAY = Metric(
    "webhooks_first_attempt_delay_seconds",
    Kind.HISTOGRAM,
    "Publish to the start of the first HTTP attempt (the product's own share of the latency"
    " SLO; deliveries held by an open circuit are not counted)",
    unit="s",
    buckets=LATENCY_BUCKETS,
)
DELIVERIES_FINISHED = Metric(
    "webhooks_deliveries_finished_total",
    Kind.COUNTER,
    "Delivery runs finished, by final state",
    ("state",),
)
DEAD_LETTERS_OPENED = Metric(
    "webhooks_dead_letters_opened", Kind.COUNTER, "Dead letters opened", ("reason",)
)
DEAD_LETTERS_CLOSED = Metric(
    "webhooks_dead_letters_closed", Kind.COUNTER, "Dead letters closed", ("reason", "state")
)
CIRCUIT_TRANSITIONS = Metric(
    "webhooks_circuit_transitions", Kind.COUNTER, "Circuit phase changes", ("to",)
)
DEAD_LETTERS_OPEN = Metric(
    "webhooks_dead_letters_open",
    Kind.GAUGE,
    "Open dead letters by reason, counted by visibility",
    ("reason",),
)
CIRCUITS = Metric(
    "webhooks_circuits",
    Kind.GAUGE,
    "Running endpoint circuits by phase, counted by visibility",
    ("phase",),
)
GAUGES_REFRESHED = Metric(
    "webhooks_gauges_refreshed_timestamp_seconds",
    Kind.GAUGE,
    "Unix time of the last successful refresh of the visibility gauges",
)
REGISTRY_CACHE = Metric(
    "webhooks_registry_cache_lookups_total",
    Kind.COUNTER,
    "Registry lookups by the worker (endpoint, legacy secret ref, circuit verdict), by cache"
    " result (hit or miss)",
    ("kind", "result"),
)
CIRCUIT_IO_FAILURES = Metric(
    "webhooks_circuit_io_failures",
    Kind.COUNTER,
    "Failed attempts of the circuit's own I/O (publish, wake, nudge, load), each retried",
    ("activity",),
)

ALL: tuple[Metric, ...] = (
    ATTEMPTS,
    ATTEMPT_DURATION,
    DELIVERY_LATENCY,
    FIRST_ATTEMPT_DELAY,
    DELIVERIES_FINISHED,
    DEAD_LETTERS_OPENED,
    DEAD_LETTERS_CLOSED,
    CIRCUIT_TRANSITIONS,
    DEAD_LETTERS_OPEN,
    CIRCUITS,
    GAUGES_REFRESHED,
    REGISTRY_CACHE,
    CIRCUIT_IO_FAILURES,
)

BUCKETS: dict[str, list[float]] = {m.name: list(m.buckets) for m in ALL if m.buckets}
"""For the runtime's `PrometheusConfig.histogram_bucket_overrides`."""


def status_class(code: int | None) -> str:
    """`2xx` .. `5xx` for an HTTP status, `none` when there was no response."""
    if code is None or not 100 <= code <= 599:
        return "none"
    return f"{code // 100}xx"
