"""The workflows' metrics: replay-safe instruments for the catalogue's metrics.

The workflow's metric meter records nothing while a workflow replays, so a worker restart or
a cache eviction never counts anything twice. Labels are fixed small sets
(`webhooks.core.metrics`); ids never go in a label.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import MetricCounter

with workflow.unsafe.imports_passed_through():
    from webhooks.core import metrics


def counter(metric: metrics.Metric) -> MetricCounter:
    """A replay-safe counter from the current workflow's meter."""
    return workflow.metric_meter().create_counter(metric.name, metric.description, metric.unit)
