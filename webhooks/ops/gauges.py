"""The backlog gauges: open dead letters by reason, running circuits by phase.

They come from visibility counts (one count query per reason and per phase, no listing),
not from the workflows, so they are right after restarts and whatever number of workers
there are. One process refreshes them: the worker started with
`WEBHOOKS_GAUGES_INTERVAL_SECONDS` (or the console). Every reason and phase is set, zeros
included, so the series exist from the first refresh; no label holds an id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from temporalio.client import Client
from temporalio.common import MetricGauge, MetricMeter
from temporalio.runtime import Runtime
from temporalio.service import RPCError

from webhooks.core import metrics
from webhooks.core import search_attributes as sa
from webhooks.core.circuit import CircuitPhase
from webhooks.core.names import CIRCUIT_WORKFLOW
from webhooks.core.visibility import quote
from webhooks.ops.dead_letters import DeadLetterFilter, count_open_by_reason

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backlog:
    dead_letters_open: dict[str, int]
    circuits: dict[str, int]


def circuit_query(phase: CircuitPhase, task_queue: str | None = None) -> str:
    query = (
        f"WorkflowType={quote(CIRCUIT_WORKFLOW)} AND ExecutionStatus='Running' "
        f"AND {sa.STATUS.name}={quote(phase.value)}"
    )
    return query + (f" AND TaskQueue={quote(task_queue)}" if task_queue else "")


async def count_backlog(client: Client, task_queue: str | None = None) -> Backlog:
    """Count open dead letters per reason and running circuits per phase."""
    dead = await count_open_by_reason(client, DeadLetterFilter(task_queue=task_queue), zeros=True)
    circuits = {
        phase.value: (await client.count_workflows(circuit_query(phase, task_queue))).count
        for phase in CircuitPhase
    }
    return Backlog(dead_letters_open=dead, circuits=circuits)


def meter_of(client: Client) -> MetricMeter:
    """The meter of the client's runtime: its metrics are served with the worker's."""
    return (client.service_client.config.runtime or Runtime.default()).metric_meter


class BacklogGauges:
    """Sets the gauges from `count_backlog`, once or every `interval` seconds."""

    def __init__(self, client: Client, *, task_queue: str | None = None) -> None:
        self._client = client
        self._task_queue = task_queue
        meter = meter_of(client)
        self._dead = _gauge(meter, metrics.DEAD_LETTERS_OPEN)
        self._circuits = _gauge(meter, metrics.CIRCUITS)
        refreshed = metrics.GAUGES_REFRESHED
        self._refreshed = meter.create_gauge_float(
            refreshed.name, refreshed.description, refreshed.unit
        )

    async def refresh(self) -> Backlog:
        backlog = await count_backlog(self._client, self._task_queue)
        for reason, count in backlog.dead_letters_open.items():
            self._dead.set(count, {"reason": reason})
        for phase, count in backlog.circuits.items():
            self._circuits.set(count, {"phase": phase})
        self._refreshed.set(time.time())
        return backlog

    async def run(self, interval: float, stop: asyncio.Event) -> None:
        """Refresh until `stop` is set; a failed refresh is logged and retried next time
        (the `WebhooksGaugesStale` alert notices if it keeps failing)."""
        while not stop.is_set():
            try:
                await self.refresh()
            except RPCError as err:
                log.warning("backlog gauges not refreshed: %s", err.message)
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except TimeoutError:
                pass


def _gauge(meter: MetricMeter, metric: metrics.Metric) -> MetricGauge:
    return meter.create_gauge(metric.name, metric.description, metric.unit)
