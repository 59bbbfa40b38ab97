"""What the product's own metric calls cost a delivery, measured without the noise of a
whole run: the calls one delivered-first-time delivery makes (`workflows/telemetry.py` and
the registry cache counter in `activities/endpoint_cache.py`), through a runtime that
records Prometheus metrics, against the same calls on the no-op meter of a runtime without
metrics (what a worker without `WEBHOOKS_METRICS_BIND_ADDRESS` gets).

The SDK's own `temporal_*` metrics are recorded by its core (Rust) and are not in this
figure; the whole-run comparison (`python -m bench --metrics-cost`) includes them.
"""

from __future__ import annotations

import time

from temporalio.common import MetricMeter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from webhooks.core import metrics

DELIVERIES = 20_000


def one_delivery(root: MetricMeter) -> None:
    """The meter calls of one delivery delivered on its first attempt."""
    workflow = root.with_additional_attributes(
        {"namespace": "default", "task_queue": "webhooks", "workflow_type": "WebhookDelivery"}
    )
    attempts, finished = (
        workflow.create_counter(m.name, m.description, m.unit)
        for m in (metrics.ATTEMPTS, metrics.DELIVERIES_FINISHED)
    )
    duration, latency, first = (
        workflow.create_histogram_float(m.name, m.description, m.unit)
        for m in (metrics.ATTEMPT_DURATION, metrics.DELIVERY_LATENCY, metrics.FIRST_ATTEMPT_DELAY)
    )
    activity = root.with_additional_attributes(
        {"namespace": "default", "task_queue": "webhooks", "activity_type": "send_webhook"}
    )
    cache = metrics.REGISTRY_CACHE
    activity.create_counter(cache.name, cache.description, cache.unit).add(1, {"result": "hit"})
    attempts.add(1, {"outcome": "delivered", "error_kind": "none", "status_class": "2xx"})
    duration.record(0.012, {"outcome": "delivered"})
    first.record(0.004)
    finished.add(1, {"state": "delivered"})
    latency.record(0.016, {"outcome": "delivered"})


def _cpu_us_per_delivery(meter: MetricMeter) -> float:
    start = time.process_time()
    for _ in range(DELIVERIES):
        one_delivery(meter)
    return (time.process_time() - start) * 1e6 / DELIVERIES


def measure(bind_address: str = "127.0.0.1:0") -> tuple[float, float]:
    """(µs per delivery with metrics recorded, µs with the no-op meter)."""
    recording = Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address)))
    off = Runtime(telemetry=TelemetryConfig()).metric_meter
    assert off is MetricMeter.noop
    return _cpu_us_per_delivery(recording.metric_meter), _cpu_us_per_delivery(off)
