"""The retry storm: N deliveries to a dead endpoint, then recovery, in one run.

    .venv/bin/python -m bench.storm              # default: 1,000 deliveries, ~1.5-2 minutes
    .venv/bin/python -m bench.storm --n 300      # quicker
    .venv/bin/python -m bench.storm --json       # machine-readable
    .venv/bin/python -m bench.storm --held 10000 # the held queue (below): ~15-30 minutes

Against its own embedded dev server, with one worker (circuit on, short cooldowns) and one
receiver: first N deliveries to a healthy endpoint (the healthy throughput), then N to an
endpoint that answers 500 to everything. Once its circuit has been open for a while the
endpoint recovers (answers 200) and every waiting delivery drains. It reports the HTTP
requests the dead endpoint received before its circuit opened and while it was open, the
signals the circuit workflow received (every run of it), the gate checks the waiting
deliveries made, and the drain rate after recovery against the healthy throughput.

`--held H` runs the held-queue scenario instead: after the healthy N, H deliveries to a
dead endpoint (and `--disable-n` to a second one) wait behind open circuits with a long
cooldown; for `--dead-seconds` once all are held it measures what the waiting queue costs
(workflow tasks per second from the dev server's own metrics, server CPU, HTTP requests:
probes only); then an operator `disable` of the second endpoint (0 requests after it
returns, every delivery dead-lettered `endpoint_disabled`), then the first recovers and
its H deliveries drain. See docs/circuit.md.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from bench.__main__ import BIN, SECRET, _child_pid
from tests.postgres import free_port
from webhooks.codec import generate_key
from webhooks.config import Settings
from webhooks.core import search_attributes as sa
from webhooks.core.circuit import CircuitConfig, CircuitPhase, CircuitSnapshot, OperatorRequest
from webhooks.core.ids import circuit_id
from webhooks.core.models import DeadLetterReason, DeliveryResult, DeliveryState, RetrySchedule
from webhooks.core.names import DELIVERY_WORKFLOW
from webhooks.core.visibility import quote
from webhooks.dev.devserver import SQLITE_PRAGMAS
from webhooks.dev.receiver import ReceivedRequest, Receiver, Respond
from webhooks.ops.circuits import steer_circuit
from webhooks.publisher import WebhookPublisher
from webhooks.registry.errors import EndpointNotFoundError
from webhooks.registry.models import NewEndpoint
from webhooks.registry.service import EndpointRegistry, open_registry
from worker import running_worker

HEALTHY, DEAD = "ep_storm_healthy", "ep_storm_dead"
DISABLED = "ep_storm_disabled"
"""The held scenario's second dead endpoint, which an operator disables."""
LATE = 20
"""Deliveries published to it after the disable returned (they must make no request)."""
EVENT_TYPE = "bench.storm"
STORM_RETRY = RetrySchedule(
    schedule_seconds=[0, 1, 2, 4, 8, 15], max_attempts=100, jitter=0.2, throttled_min_seconds=0
)
"""Aggressive on purpose: without a circuit each delivery would try every 15 s or sooner."""
SAMPLE = 50
"""Waiting deliveries whose histories are read to count gate checks (reading all is slow)."""
WORKFLOW_TASK_CALLS = ("RespondWorkflowTaskCompleted", "RespondWorkflowTaskFailed")
"""Frontend calls that end a workflow task: their count is the workflow tasks processed."""
RESULTS_IN_FLIGHT = 50
IN_FLIGHT_SECONDS = 1.0
"""Requests until this long after the circuit published its opening and the workers' cache
TTL passed were past a gate already, or sent on an older copy: not probes."""
PROBE_DUE_SECONDS = 15.0
"""A half-open circuit gets its probe's result within this: a nudge, a wake, a gate
check, one POST, one report (generous: the machine is shared)."""
HELD_BEYOND_SECONDS = 600
"""A delivery whose next attempt is this far off is held by the circuit (HOLD_SECONDS),
not by a worker's local trip (seconds) or its own backoff (at most 15 s here)."""


@dataclass
class Endpoint:
    """What one receiver path got, and whether it answers 200 or 500 now."""

    healthy: bool
    requests: list[ReceivedRequest] = field(default_factory=list)
    delivered: dict[str, float] = field(default_factory=dict)
    """webhook-id -> time of its first 2xx."""
    done: asyncio.Event = field(default_factory=asyncio.Event)
    expected: int = 0

    def answer(self, request: ReceivedRequest) -> Respond:
        self.requests.append(request)
        if not self.healthy:
            return Respond(500)
        self.delivered.setdefault(request.headers.get("webhook-id", ""), request.received_at)
        if self.expected and len(self.delivered) >= self.expected:
            self.done.set()
        return Respond(200)


@dataclass
class Report:
    n: int
    cooldown_seconds: float
    healthy_deliveries_per_s: float
    requests_before_open: int
    open_seconds: float
    requests_while_open: int
    probe_bound: int
    """What the brief allows while open: one probe per cooldown (plus one)."""
    requests_without_circuit: int
    """What the same schedule would have cost over the same time without a circuit."""
    circuit_signals: int
    circuit_runs: int
    circuit_history_events: int
    signals_per_second: float
    gate_checks_per_waiting_delivery: float
    recovery_seconds: float
    """From the flip to 200 until the first waiting delivery arrived (the next probe)."""
    drain_seconds: float
    """From the first waiting delivery that arrived to the last."""
    drain_deliveries_per_s: float
    drain_ratio: float
    """Drain rate over healthy throughput."""
    flip_to_all_delivered_seconds: float
    flip_ratio: float
    """The same from the flip, the wait for the next probe included."""
    dead_lettered: int
    duplicates: int
    server_load_idle: float | None
    """Server CPU seconds per second with nothing to do (the dev server's own floor)."""
    server_load_healthy: float | None
    """Server CPU seconds per second while delivering to the healthy endpoint."""
    server_load_while_open: float | None
    """... and while the dead endpoint's circuit was open with N deliveries waiting."""
    timeline: dict[str, float]
    workflow_tasks_per_s_while_open: float | None = None
    """Workflow tasks the server completed per second in the same window (its metrics)."""
    load_average_before: float = 0.0
    load_average_after: float = 0.0

    def checks(self) -> list[tuple[str, bool]]:
        return [
            (
                f"requests while open ({self.requests_while_open}) <= one probe per cooldown "
                f"({self.probe_bound})",
                self.requests_while_open <= self.probe_bound,
            ),
            (
                "every delivery delivered, none twice",
                not self.dead_lettered and not self.duplicates,
            ),
        ]


ACTIVITY_ENDS = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: "activity_task_completed_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: "activity_task_failed_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: "activity_task_timed_out_event_attributes",
}


@dataclass
class CircuitHistory:
    """What the circuit workflow did, from its histories (every run)."""

    signals: int = 0
    runs: int = 0
    events: int = 0
    activities: Counter[str] = field(default_factory=Counter)
    timeline: list[tuple[float, str]] = field(default_factory=list)
    """(seconds into the run, what): operator signals, activities, phase changes."""


@dataclass
class Window:
    """What the server and this process did over a stretch of time."""

    seconds: float
    server_cpu_cores: float | None
    bench_cpu_cores: float
    """This process: the worker, the receiver and the publisher."""
    workflow_tasks_per_s: float | None
    calls_per_s: dict[str, float]
    """Frontend calls per second by operation (the busiest), from the server's metrics."""


@dataclass
class HeldReport:
    """The held-queue scenario: `--held` deliveries waiting behind an open circuit."""

    held: int
    disabled_n: int
    cooldown_seconds: float
    healthy_n: int
    healthy_deliveries_per_s: float
    healthy_duplicates: int
    """Requests to the healthy endpoint beyond one per delivery (an overloaded worker)."""
    healthy: Window
    publish_seconds: float
    """Publishing the held deliveries (and the ones to the endpoint disabled later)."""
    publish_per_s: float
    open_window: Window
    """Once every delivery is held, for --dead-seconds: the cost of the waiting queue."""
    sampled_tasks_per_held_delivery: float
    """Workflow tasks completed in that window per held delivery, from a sample's histories."""
    sampled_task_timeouts_per_delivery: float
    """Workflow tasks that timed out per held delivery over the run (an overloaded worker)."""
    requests_before_open: int
    open_seconds: float
    requests_while_open: int
    requests_in_window: int
    probe_bound: int
    requests_in_flight_at_open: int
    """Of those, sent before the opening reached every worker (see IN_FLIGHT_SECONDS)."""
    probe_gaps: list[float]
    """Seconds between the other requests while open (each a probe: >= the cooldown)."""
    half_open_seconds: list[float]
    """How long each half-open spell of the circuit lasted: until its probe's result."""
    requests_without_circuit: int
    circuit_signals: int
    circuit_runs: int
    circuit_history_events: int
    circuit_activities: dict[str, int]
    circuit_timeline: list[tuple[float, str]]
    """The dead endpoint's circuit: phase changes, activities, operator signals."""
    disabled_requests_before_disable: int
    disable_seconds: float
    """`steer_circuit(..., "disable")`: until every worker acts on it."""
    requests_after_disable: int
    after_disable_seconds: float
    disabled_dead_lettered: int
    """Dead-lettered `endpoint_disabled`, of disabled_n + LATE."""
    disabled_other: int
    disabled_to_all_dead_lettered_seconds: float
    recovery_seconds: float
    drain_seconds: float
    drain_deliveries_per_s: float
    drain_ratio: float
    flip_to_all_delivered_seconds: float
    flip_ratio: float
    drain: Window
    dead_lettered: int
    duplicates: int
    left_running: int
    """Deliveries of either dead endpoint still running once everything should be done."""
    server_load_idle: float | None
    timeline: dict[str, float]
    load_average_before: float = 0.0
    load_average_after: float = 0.0
    load_averages: dict[str, float] = field(default_factory=dict)
    """1-min load average at each phase of the run."""

    def checks(self) -> list[tuple[str, bool]]:
        probes_ok = all(gap >= self.cooldown_seconds * 0.9 for gap in self.probe_gaps)
        return [
            (
                f"probes while open ({self.requests_while_open - self.requests_in_flight_at_open})"
                f" <= one per cooldown ({self.probe_bound})",
                self.requests_while_open - self.requests_in_flight_at_open <= self.probe_bound,
            ),
            ("no two probes closer than the cooldown", probes_ok),
            (
                f"every half-open spell ends within {PROBE_DUE_SECONDS:g} s (its probe came): "
                f"longest {max(self.half_open_seconds, default=0):g} s",
                max(self.half_open_seconds, default=0) <= PROBE_DUE_SECONDS,
            ),
            (
                f"0 requests after the disable ({self.requests_after_disable})",
                self.requests_after_disable == 0,
            ),
            (
                f"every delivery to the disabled endpoint dead-lettered endpoint_disabled "
                f"({self.disabled_dead_lettered}/{self.disabled_n + LATE})",
                self.disabled_dead_lettered == self.disabled_n + LATE and not self.disabled_other,
            ),
            (
                f"every held delivery delivered, none twice ({self.dead_lettered} dead-lettered, "
                f"{self.duplicates} duplicates)",
                not self.dead_lettered and not self.duplicates,
            ),
            (f"none left running ({self.left_running})", not self.left_running),
        ]


class Storm:
    def __init__(
        self,
        client: Client,
        settings: Settings,
        registry: EndpointRegistry,
        args: argparse.Namespace,
        metrics_port: int | None = None,
    ) -> None:
        self.client = client
        self.registry = registry
        self.args = args
        self.metrics_port = metrics_port
        self.endpoints = {
            HEALTHY: Endpoint(healthy=True),
            DEAD: Endpoint(healthy=False),
            DISABLED: Endpoint(healthy=False),
        }
        self.config = CircuitConfig(
            cooldown_seconds=args.cooldown,
            cooldown_multiplier=args.multiplier,
            max_cooldown_seconds=args.max_cooldown,
        )
        self.settings = settings.model_copy(
            update={
                "task_queue": f"storm-{uuid.uuid4().hex[:6]}",
                "circuit_enabled": True,
                "circuit": self.config,
            }
        )
        self.publisher = WebhookPublisher(
            client, registry=registry, task_queue=self.settings.task_queue
        )
        self.server_pid = _child_pid("temporal")
        self.t0 = time.time()
        self.marks: dict[str, float] = {}

    def on_request(self, request: ReceivedRequest) -> Respond:
        return self.endpoints[request.path.strip("/")].answer(request)

    def mark(self, name: str) -> float:
        now = time.time()
        self.marks[name] = round(now - self.t0, 3)
        self.log(f"{now - self.t0:7.1f} s  {name}")
        return now

    def log(self, line: str) -> None:
        if not self.args.json:
            print(line, flush=True)

    async def publish(
        self, endpoint: str, url: str, n: int, *, progress: bool = False
    ) -> list[str]:
        ids: list[str] = []
        prefix = uuid.uuid4().hex[:8]
        try:
            await self.registry.get(endpoint)
        except EndpointNotFoundError:
            new = NewEndpoint(id=endpoint, account_id="acct_storm", url=url)
            await self.registry.create(new, secret=SecretStr(SECRET))

        async def one(i: int) -> None:
            ids.append(
                await self.publisher.publish(
                    endpoint_id=endpoint,
                    event_type=EVENT_TYPE,
                    data={"i": i},
                    event_id=f"evt_{prefix}_{i:07d}",
                    retry=STORM_RETRY,
                )
            )

        step = self.args.concurrency
        for start in range(0, n, step):
            await asyncio.gather(*(one(i) for i in range(start, min(start + step, n))))
            if progress and (start // step) % max(1, 1000 // step) == 0 and start:
                self.log(f"{time.time() - self.t0:7.1f} s    {start} published")
        return ids

    async def circuit_state(self, endpoint: str = DEAD) -> CircuitSnapshot | None:
        try:
            snapshot: CircuitSnapshot = await self.client.get_workflow_handle(
                circuit_id(endpoint)
            ).query("state", result_type=CircuitSnapshot)
        except Exception:
            return None
        return snapshot

    async def run(self, base_url: str) -> Report:
        n = self.args.n
        async with running_worker(self.client, self.settings):
            # 1. Healthy throughput, same worker, same server.
            healthy = self.endpoints[HEALTHY]
            healthy.expected = n
            start = self.mark("healthy: publishing")
            cpu_h0 = self.server_cpu()
            await self.publish(HEALTHY, f"{base_url}/{HEALTHY}", n)
            await asyncio.wait_for(healthy.done.wait(), 120 + n)
            healthy_end = max(healthy.delivered.values())
            cpu_h1 = self.server_cpu()
            healthy_rate = n / (healthy_end - start)
            self.mark(f"healthy: {n} delivered, {healthy_rate:.1f}/s")
            await self.drain()

            # 2. The storm: N deliveries to an endpoint that answers 500.
            dead = self.endpoints[DEAD]
            dead.expected = n
            self.mark("dead: publishing")
            ids = await self.publish(DEAD, f"{base_url}/{DEAD}", n)
            snapshot = await self.until_open()
            assert snapshot.opened_at is not None
            opened = snapshot.opened_at.timestamp()
            self.mark(f"dead: circuit open (workflow time {opened - self.t0:.1f} s)")
            # Server load in the steady state: the deliveries have all been told to wait.
            settle = min(5.0, self.args.dead_seconds / 4)
            await asyncio.sleep(settle)
            cpu0 = self.server_cpu()
            calls0 = await self.server_calls()
            await asyncio.sleep(self.args.dead_seconds - settle)
            cpu1 = self.server_cpu()
            calls1 = await self.server_calls()

            # 3. Recovery.
            dead.healthy = True
            flip = self.mark("dead: endpoint answers 200 again")
            await asyncio.wait_for(dead.done.wait(), 300 + n)
            delivered = sorted(dead.delivered.values())
            self.mark(f"dead: all {n} delivered")
            results = await asyncio.gather(*(self.result(d) for d in ids))
            await self.drain()
            self.mark("drained")
            idle0 = self.server_cpu()
            await asyncio.sleep(5)
            idle_load = _per_second(idle0, self.server_cpu(), 5)
            history = await self.circuit_history()
            checks = await self.gate_checks(ids[:: max(1, n // SAMPLE)])

        healthy_load = _per_second(cpu_h0, cpu_h1, healthy_end - start)
        open_load = _per_second(cpu0, cpu1, self.args.dead_seconds - settle)
        drain = delivered[-1] - delivered[0]
        before = [r for r in dead.requests if r.received_at <= opened]
        while_open = [r for r in dead.requests if opened < r.received_at < flip]
        open_seconds = flip - opened
        total_seconds = flip - self.marks_abs("dead: publishing")
        return Report(
            n=n,
            cooldown_seconds=self.args.cooldown,
            healthy_deliveries_per_s=round(healthy_rate, 1),
            requests_before_open=len(before),
            open_seconds=round(open_seconds, 1),
            requests_while_open=len(while_open),
            probe_bound=int(open_seconds / self.args.cooldown) + 1,
            requests_without_circuit=int(n * _attempts_within(STORM_RETRY, total_seconds)),
            circuit_signals=history.signals,
            circuit_runs=history.runs,
            circuit_history_events=history.events,
            signals_per_second=round(
                history.signals / (delivered[-1] - self.marks_abs("dead: publishing")), 2
            ),
            gate_checks_per_waiting_delivery=round(checks, 1),
            recovery_seconds=round(delivered[0] - flip, 2),
            drain_seconds=round(drain, 2),
            drain_deliveries_per_s=round(n / drain, 1),
            drain_ratio=round(n / drain / healthy_rate, 2),
            flip_to_all_delivered_seconds=round(delivered[-1] - flip, 2),
            flip_ratio=round(n / (delivered[-1] - flip) / healthy_rate, 2),
            dead_lettered=sum(r.state is not DeliveryState.DELIVERED for r in results),
            duplicates=len(dead.requests) - len(before) - len(while_open) - n,
            server_load_idle=idle_load,
            server_load_healthy=healthy_load,
            server_load_while_open=open_load,
            timeline=self.marks,
            workflow_tasks_per_s_while_open=_workflow_tasks_per_s(
                calls0, calls1, self.args.dead_seconds - settle
            ),
        )

    async def run_held(self, base_url: str) -> HeldReport:
        """Healthy throughput, then `--held` deliveries held by an open circuit (and
        `--disable-n` by a second one), the cost while they wait, a disable, a recovery."""
        n, held, doomed_n = self.args.n, self.args.held, self.args.disable_n
        loads: dict[str, float] = {"start": os.getloadavg()[0]}
        async with running_worker(self.client, self.settings):
            # 1. Healthy throughput, same worker, same server.
            healthy = self.endpoints[HEALTHY]
            healthy.expected = n
            start = self.mark("healthy: publishing")
            probe = await self.probe()
            await self.publish(HEALTHY, f"{base_url}/{HEALTHY}", n)
            await asyncio.wait_for(healthy.done.wait(), 120 + n)
            healthy_end = max(healthy.delivered.values())
            healthy_window = await self.window(probe, healthy_end - start)
            healthy_rate = n / (healthy_end - start)
            self.mark(f"healthy: {n} delivered, {healthy_rate:.1f}/s")
            loads["healthy"] = os.getloadavg()[0]
            await self.drain()

            # 2. The held queue: deliveries to two endpoints that answer 500.
            dead, doomed = self.endpoints[DEAD], self.endpoints[DISABLED]
            dead.expected = held
            publish_start = self.mark(f"held: publishing {doomed_n} + {held}")
            doomed_ids = await self.publish(DISABLED, f"{base_url}/{DISABLED}", doomed_n)
            ids = await self.publish(DEAD, f"{base_url}/{DEAD}", held, progress=True)
            publish_seconds = self.mark("held: all published") - publish_start
            loads["publishing"] = os.getloadavg()[0]
            snapshot = await self.until_open()
            assert snapshot.opened_at is not None
            opened = snapshot.opened_at.timestamp()
            if doomed_n:
                await self.until_open(DISABLED)
            await self.until_held(DEAD, held)
            if doomed_n:
                await self.until_held(DISABLED, doomed_n)
            self.mark(f"held: every delivery held (circuit opened at {opened - self.t0:.1f} s)")

            # 3. What the waiting queue costs, once every delivery is held.
            window_start = time.time()
            probe = await self.probe()
            await asyncio.sleep(self.args.dead_seconds)
            open_window = await self.window(probe, self.args.dead_seconds)
            window_end = time.time()
            loads["open"] = os.getloadavg()[0]
            self.mark(f"held: measured {self.args.dead_seconds:g} s open")
            self.log(f"           {_window(open_window)}")
            self.log(f"           requests so far: {len(dead.requests)} / {len(doomed.requests)}")

            # 4. An operator disables the second endpoint: no request after that.
            disable_seconds = after_disable = doomed_done = 0.0
            acted = time.time()
            doomed_results: list[DeliveryResult] = []
            if doomed_n:
                asked = self.mark(f"disable {DISABLED}")
                await steer_circuit(
                    self.client,
                    self.settings,
                    DISABLED,
                    "disable",
                    OperatorRequest(requested_by="bench.storm", reason="storm bench"),
                    verdicts=self.registry.circuit,
                )
                acted = self.mark("disable: every worker acts on it")
                sent = len(doomed.requests)
                disable_seconds = acted - asked
                late = await self.publish(DISABLED, f"{base_url}/{DISABLED}", LATE)
                doomed_results = await self.results(doomed_ids + late)
                doomed_done = self.mark("disable: all dead-lettered") - acted
                # Keep listening: a worker that missed the disable would send now.
                await asyncio.sleep(max(0.0, self.args.after_disable_seconds - doomed_done))
                after_disable = time.time() - acted
                self.mark(f"disable: listened {after_disable:.0f} s")
                self.log(f"           requests after it: {len(doomed.requests) - sent}")

            # 5. Recovery: the held queue drains.
            dead.healthy = True
            flip = self.mark("dead: endpoint answers 200 again")
            probe = await self.probe()
            await asyncio.wait_for(self.until_done(dead, flip), 300 + held / 5)
            delivered = sorted(dead.delivered.values())
            drain_window = await self.window(probe, delivered[-1] - flip)
            loads["drain"] = os.getloadavg()[0]
            self.mark(f"dead: all {held} delivered")
            results = await self.results(ids)
            left_running = await self.count(DEAD) + await self.count(DISABLED)
            await self.drain()
            self.mark("drained")
            idle0 = self.server_cpu()
            await asyncio.sleep(5)
            idle_load = _per_second(idle0, self.server_cpu(), 5)
            history = await self.circuit_history()
            sample = ids[:: max(1, held // SAMPLE)]
            sampled, timeouts = await self.tasks_between(sample, window_start, window_end)

        before = [r for r in dead.requests if r.received_at <= opened]
        while_open = [r for r in dead.requests if opened < r.received_at < flip]
        in_window = [r for r in while_open if window_start <= r.received_at <= window_end]
        open_seconds = flip - opened
        drain = delivered[-1] - delivered[0]
        # Sends already past a gate when the circuit opened, or before the workers' caches
        # had its verdict, are not probes.
        spoke = next((self.t0 + at for at, what in history.timeline if what == "phase open"), 0)
        tail_end = max(opened, spoke) + self.settings.registry_cache_seconds + IN_FLIGHT_SECONDS
        in_flight = [r for r in while_open if r.received_at <= tail_end]
        times = [r.received_at for r in while_open if r.received_at > tail_end]
        timeline = sorted(
            history.timeline + [(round(t - self.t0, 1), "request") for t in times],
            key=lambda entry: entry[0],
        )
        return HeldReport(
            held=held,
            disabled_n=doomed_n,
            cooldown_seconds=self.args.cooldown,
            healthy_n=n,
            healthy_deliveries_per_s=round(healthy_rate, 1),
            healthy_duplicates=len(healthy.requests) - n,
            healthy=healthy_window,
            publish_seconds=round(publish_seconds, 1),
            publish_per_s=round((held + doomed_n) / publish_seconds, 1),
            open_window=open_window,
            sampled_tasks_per_held_delivery=round(sampled, 3),
            sampled_task_timeouts_per_delivery=round(timeouts, 2),
            requests_before_open=len(before),
            open_seconds=round(open_seconds, 1),
            requests_while_open=len(while_open),
            requests_in_window=len(in_window),
            probe_bound=int(open_seconds / self.args.cooldown) + 1,
            requests_in_flight_at_open=len(in_flight),
            probe_gaps=[round(b - a, 1) for a, b in itertools.pairwise(times)],
            half_open_seconds=half_open_durations(history.timeline),
            requests_without_circuit=int(
                held * _attempts_within(STORM_RETRY, flip - publish_start)
            ),
            circuit_signals=history.signals,
            circuit_runs=history.runs,
            circuit_history_events=history.events,
            circuit_activities=dict(history.activities),
            circuit_timeline=timeline,
            disabled_requests_before_disable=len(
                [r for r in doomed.requests if r.received_at < acted]
            ),
            disable_seconds=round(disable_seconds, 1),
            requests_after_disable=len([r for r in doomed.requests if r.received_at >= acted]),
            after_disable_seconds=round(after_disable, 1),
            disabled_dead_lettered=sum(
                r.dead_letter_reason is DeadLetterReason.ENDPOINT_DISABLED for r in doomed_results
            ),
            disabled_other=sum(
                r.dead_letter_reason is not DeadLetterReason.ENDPOINT_DISABLED
                for r in doomed_results
            ),
            disabled_to_all_dead_lettered_seconds=round(doomed_done, 1),
            recovery_seconds=round(delivered[0] - flip, 2),
            drain_seconds=round(drain, 2),
            drain_deliveries_per_s=round(held / drain, 1),
            drain_ratio=round(held / drain / healthy_rate, 2),
            flip_to_all_delivered_seconds=round(delivered[-1] - flip, 2),
            flip_ratio=round(held / (delivered[-1] - flip) / healthy_rate, 2),
            drain=drain_window,
            dead_lettered=sum(r.state is not DeliveryState.DELIVERED for r in results),
            duplicates=len(dead.requests) - len(before) - len(while_open) - held,
            left_running=left_running,
            server_load_idle=idle_load,
            timeline=self.marks,
            load_averages={k: round(v, 2) for k, v in loads.items()},
        )

    async def probe(self) -> tuple[float, float | None, float, Counter[str] | None]:
        """Where a window starts: wall time, server CPU, this process's CPU, server calls."""
        return time.time(), self.server_cpu(), time.process_time(), await self.server_calls()

    async def window(
        self, start: tuple[float, float | None, float, Counter[str] | None], seconds: float
    ) -> Window:
        """The window from `start` to now; rates over `seconds` (the part that counts)."""
        _, cpu0, own0, calls0 = start
        calls1 = await self.server_calls()
        busiest: dict[str, float] = {}
        if calls0 is not None and calls1 is not None:
            delta = calls1 - calls0
            busiest = {op: round(k / seconds, 1) for op, k in delta.most_common(8)}
        return Window(
            seconds=round(seconds, 1),
            server_cpu_cores=_per_second(cpu0, self.server_cpu(), seconds),
            bench_cpu_cores=round((time.process_time() - own0) / seconds, 2),
            workflow_tasks_per_s=_workflow_tasks_per_s(calls0, calls1, seconds),
            calls_per_s=busiest,
        )

    async def server_calls(self) -> Counter[str] | None:
        """The dev server's frontend calls so far, by operation (None: no metrics)."""
        if self.metrics_port is None:
            return None
        try:
            async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
                response = await http.get(f"http://127.0.0.1:{self.metrics_port}/metrics")
        except httpx.HTTPError:
            return None
        return frontend_calls(response.text)

    async def count(self, endpoint: str, held: bool = False) -> int:
        """Running deliveries to the endpoint; `held`: only those the circuit holds (a
        local trip holds for seconds, the circuit for HOLD_SECONDS)."""
        query = (
            f"WorkflowType={quote(DELIVERY_WORKFLOW)} AND ExecutionStatus='Running' "
            f"AND {sa.ENDPOINT_ID.name}={quote(endpoint)}"
        )
        if held:
            after = datetime.now(UTC) + timedelta(seconds=HELD_BEYOND_SECONDS)
            query += (
                f" AND {sa.STATUS.name}={quote(DeliveryState.CIRCUIT_OPEN.value)}"
                f" AND {sa.NEXT_ATTEMPT_AT.name} > {quote(after.strftime('%Y-%m-%dT%H:%M:%SZ'))}"
            )
        return (await self.client.count_workflows(query)).count

    async def until_held(self, endpoint: str, n: int) -> None:
        """Until every delivery to the endpoint waits behind its circuit (one may probe)."""
        deadline = time.monotonic() + 300 + n / 10
        while (await self.count(endpoint, held=True)) < n - 1:
            if time.monotonic() > deadline:
                raise RuntimeError(f"deliveries to {endpoint} not all held")
            await asyncio.sleep(1)

    async def results(self, ids: list[str]) -> list[DeliveryResult]:
        in_flight = asyncio.Semaphore(RESULTS_IN_FLIGHT)

        async def one(delivery_id: str) -> DeliveryResult:
            async with in_flight:
                return await self.result(delivery_id)

        return await asyncio.gather(*(one(d) for d in ids))

    async def until_done(self, endpoint: Endpoint, since: float) -> None:
        """Wait for every delivery to the endpoint, logging the progress once a minute."""
        while True:
            try:
                await asyncio.wait_for(endpoint.done.wait(), 60)
                return
            except TimeoutError:
                k = len(endpoint.delivered)
                rate = k / (time.time() - since)
                self.log(f"{time.time() - self.t0:7.1f} s    {k} delivered ({rate:.1f}/s)")

    async def tasks_between(self, ids: list[str], start: float, end: float) -> tuple[float, float]:
        """Workflow tasks completed between `start` and `end`, and workflow tasks that timed
        out over the whole run, per delivery of `ids`."""
        total = timeouts = 0
        for delivery_id in ids:
            handle = self.client.get_workflow_handle(delivery_id)
            async for event in handle.fetch_history_events():
                if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                    total += start <= event.event_time.ToDatetime(UTC).timestamp() <= end
                elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
                    timeouts += 1
        return (total / len(ids), timeouts / len(ids)) if ids else (0.0, 0.0)

    def marks_abs(self, name: str) -> float:
        return self.t0 + self.marks[name]

    async def until_open(self, endpoint: str = DEAD) -> CircuitSnapshot:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            snapshot = await self.circuit_state(endpoint)
            if snapshot and snapshot.phase in (CircuitPhase.OPEN, CircuitPhase.HALF_OPEN):
                return snapshot
            await asyncio.sleep(0.5)
        raise RuntimeError(f"the circuit of {endpoint} never opened")

    async def result(self, delivery_id: str) -> DeliveryResult:
        handle: WorkflowHandle[Any, DeliveryResult] = self.client.get_workflow_handle(
            delivery_id, result_type=DeliveryResult
        )
        return await handle.result()

    async def drain(self) -> None:
        """Wait until no delivery is running, so phases do not overlap."""
        query = (
            f"TaskQueue='{self.settings.task_queue}' AND ExecutionStatus='Running' "
            "AND WorkflowType='WebhookDelivery'"
        )
        deadline = time.monotonic() + 120
        while (await self.client.count_workflows(query)).count:
            if time.monotonic() > deadline:
                raise RuntimeError("deliveries still running after 120 s")
            await asyncio.sleep(0.2)

    async def circuit_history(self, endpoint: str = DEAD) -> CircuitHistory:
        """Signals, history events, activities and phase changes over every run of the
        endpoint's circuit."""
        history = CircuitHistory()
        names: dict[int, str] = {}
        query = f"WorkflowId={quote(circuit_id(endpoint))}"
        async for wf in self.client.list_workflows(query):
            history.runs += 1
            handle = self.client.get_workflow_handle(wf.id, run_id=wf.run_id)
            async for event in handle.fetch_history_events():
                history.events += 1
                at = round(event.event_time.ToDatetime(UTC).timestamp() - self.t0, 1)
                kind = event.event_type
                if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
                    history.signals += 1
                    name = event.workflow_execution_signaled_event_attributes.signal_name
                    if name != "report":
                        history.timeline.append((at, f"signal {name}"))
                elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                    name = event.activity_task_scheduled_event_attributes.activity_type.name
                    names[event.event_id] = name
                    history.activities[name] += 1
                    history.timeline.append((at, f"{name} scheduled"))
                elif kind in ACTIVITY_ENDS:
                    attrs = getattr(event, ACTIVITY_ENDS[kind])
                    name = names.get(attrs.scheduled_event_id, "?")
                    history.timeline.append((at, f"{name} {ACTIVITY_ENDS[kind].split('_')[2]}"))
                elif kind == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
                    fields = (
                        event.upsert_workflow_search_attributes_event_attributes.search_attributes
                    ).indexed_fields
                    if sa.STATUS.name in fields:
                        phase = json.loads(fields[sa.STATUS.name].data)
                        history.timeline.append((at, f"phase {phase}"))
        return history

    async def gate_checks(self, ids: list[str]) -> float:
        """Local-activity markers minus HTTP attempts: how often a delivery asked the gate."""
        total = 0
        for delivery_id in ids:
            handle = self.client.get_workflow_handle(delivery_id)
            markers = 0
            async for event in handle.fetch_history_events():
                if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
                    markers += 1
            result = await self.result(delivery_id)
            total += markers - result.attempts
        return total / len(ids) if ids else 0.0

    def server_cpu(self) -> float | None:
        if self.server_pid is None:
            return None
        try:
            fields = Path(f"/proc/{self.server_pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _per_second(cpu0: float | None, cpu1: float | None, seconds: float) -> float | None:
    return round((cpu1 - cpu0) / seconds, 2) if cpu0 is not None and cpu1 is not None else None


def frontend_calls(metrics: str) -> Counter[str]:
    """Calls to the server's frontend by operation, from its Prometheus text
    (`service_requests{operation=...,service_name="frontend"} N`)."""
    calls: Counter[str] = Counter()
    for line in metrics.splitlines():
        if not line.startswith("service_requests{") or 'service_name="frontend"' not in line:
            continue
        labels, value = line.rsplit(" ", 1)
        operation = labels.split('operation="', 1)[1].split('"', 1)[0]
        calls[operation] += int(float(value))
    return calls


def _workflow_tasks_per_s(
    calls0: Counter[str] | None, calls1: Counter[str] | None, seconds: float
) -> float | None:
    if calls0 is None or calls1 is None:
        return None
    done = sum(calls1[op] - calls0[op] for op in WORKFLOW_TASK_CALLS)
    return round(done / seconds, 2)


def half_open_durations(timeline: list[tuple[float, str]]) -> list[float]:
    """Seconds from each change to half-open to the next phase change (the probe's result),
    from a circuit timeline in time order; a spell still open at the end is left out."""
    durations: list[float] = []
    since: float | None = None
    for at, what in timeline:
        if not what.startswith("phase "):
            continue
        phase = what.removeprefix("phase ")
        if since is not None and phase != CircuitPhase.HALF_OPEN.value:
            durations.append(round(at - since, 1))
            since = None
        elif since is None and phase == CircuitPhase.HALF_OPEN.value:
            since = at
    return durations


def _attempts_within(schedule: RetrySchedule, seconds: float) -> float:
    """Attempts one delivery makes in `seconds` on this schedule (no jitter) if never held."""
    assert schedule.schedule_seconds is not None
    attempts, elapsed = 0, 0.0
    while attempts < schedule.attempt_budget:
        table = schedule.schedule_seconds
        elapsed += table[min(attempts, len(table) - 1)]
        if elapsed > seconds:
            break
        attempts += 1
    return float(attempts)


def render(report: Report) -> str:
    r = report
    rows = [
        ("deliveries to the dead endpoint", f"{r.n}"),
        ("healthy throughput (same run)", f"{r.healthy_deliveries_per_s} deliveries/s"),
        ("requests before the circuit opened", f"{r.requests_before_open}"),
        (
            "requests while open",
            f"{r.requests_while_open} in {r.open_seconds} s (bound: {r.probe_bound} probes, "
            f"cooldown {r.cooldown_seconds:g} s)",
        ),
        ("requests without a circuit (estimate)", f"~{r.requests_without_circuit}"),
        (
            "circuit signals received",
            f"{r.circuit_signals} over {r.circuit_runs} run(s), "
            f"{r.signals_per_second}/s; {r.circuit_history_events} history events",
        ),
        ("gate checks per waiting delivery", f"{r.gate_checks_per_waiting_delivery}"),
        (
            "server CPU idle / healthy / while open",
            f"{r.server_load_idle} / {r.server_load_healthy} / {r.server_load_while_open} cores",
        ),
        ("first delivery after recovery", f"{r.recovery_seconds} s after the flip"),
        (
            "drain after recovery",
            f"{r.drain_deliveries_per_s} deliveries/s over {r.drain_seconds} s = "
            f"{r.drain_ratio:.2f}x healthy",
        ),
        (
            "  counted from the flip",
            f"{r.flip_to_all_delivered_seconds} s = {r.flip_ratio:.2f}x healthy",
        ),
        ("dead-lettered / duplicate requests", f"{r.dead_lettered} / {r.duplicates}"),
        ("workflow tasks/s while open (server)", f"{r.workflow_tasks_per_s_while_open}"),
        (
            "1-min load average before / after",
            f"{r.load_average_before:.2f} / {r.load_average_after:.2f} on {os.cpu_count()} CPUs",
        ),
    ]
    return _table(rows, r.checks())


def _table(rows: list[tuple[str, str]], checks: list[tuple[str, bool]]) -> str:
    width = max(len(label) for label, _ in rows)
    lines = [f"{label:<{width}}  {value}" for label, value in rows]
    lines += [f"{'ok' if passed else 'FAIL':<4}  {what}" for what, passed in checks]
    return "\n".join(lines)


def _window(w: Window) -> str:
    calls = ", ".join(f"{op} {rate}" for op, rate in w.calls_per_s.items())
    return (
        f"{w.workflow_tasks_per_s} workflow tasks/s, server {w.server_cpu_cores} cores, "
        f"bench process {w.bench_cpu_cores} cores over {w.seconds} s; calls/s: {calls}"
    )


def render_held(report: HeldReport, timeline: bool = False) -> str:
    r = report
    rows = [
        ("held deliveries (+ to the endpoint disabled)", f"{r.held} (+ {r.disabled_n})"),
        (
            "healthy throughput (same run)",
            f"{r.healthy_deliveries_per_s} deliveries/s over {r.healthy_n}, "
            f"{r.healthy_duplicates} duplicate requests",
        ),
        ("  while healthy", _window(r.healthy)),
        ("publishing the held deliveries", f"{r.publish_seconds} s = {r.publish_per_s}/s"),
        ("while all are held (circuit open)", _window(r.open_window)),
        (
            "  workflow tasks per held delivery (sample)",
            f"{r.sampled_tasks_per_held_delivery} in {r.open_window.seconds} s",
        ),
        ("requests before the circuit opened", f"{r.requests_before_open}"),
        (
            "requests while open",
            f"{r.requests_while_open} in {r.open_seconds} s (bound: {r.probe_bound} probes, "
            f"cooldown {r.cooldown_seconds:g} s); {r.requests_in_window} in the window",
        ),
        (
            "  of which before the opening reached the workers",
            f"{r.requests_in_flight_at_open}",
        ),
        ("  seconds between the probes", ", ".join(f"{g:g}" for g in r.probe_gaps) or "-"),
        ("  half-open spells (s)", ", ".join(f"{g:g}" for g in r.half_open_seconds) or "-"),
        ("requests without a circuit (estimate)", f"~{r.requests_without_circuit}"),
        (
            "circuit signals received",
            f"{r.circuit_signals} over {r.circuit_runs} run(s); "
            f"{r.circuit_history_events} history events",
        ),
        (
            "circuit activities",
            ", ".join(f"{name} {k}" for name, k in sorted(r.circuit_activities.items())),
        ),
        (
            "disable: until every worker acts",
            f"{r.disable_seconds} s ({r.disabled_requests_before_disable} requests before)",
        ),
        (
            "  requests after it returned",
            f"{r.requests_after_disable} in {r.after_disable_seconds} s",
        ),
        (
            "  dead-lettered endpoint_disabled",
            f"{r.disabled_dead_lettered} of {r.disabled_n} + {LATE} published after, "
            f"{r.disabled_to_all_dead_lettered_seconds} s; other results {r.disabled_other}",
        ),
        ("first delivery after recovery", f"{r.recovery_seconds} s after the flip"),
        (
            "drain after recovery",
            f"{r.drain_deliveries_per_s} deliveries/s over {r.drain_seconds} s = "
            f"{r.drain_ratio:.2f}x healthy",
        ),
        (
            "  counted from the flip",
            f"{r.flip_to_all_delivered_seconds} s = {r.flip_ratio:.2f}x healthy",
        ),
        ("  while draining", _window(r.drain)),
        (
            "workflow task timeouts per held delivery (sample)",
            f"{r.sampled_task_timeouts_per_delivery}",
        ),
        ("dead-lettered / duplicate requests", f"{r.dead_lettered} / {r.duplicates}"),
        ("server CPU idle", f"{r.server_load_idle} cores"),
        (
            "1-min load average",
            ", ".join(f"{k} {v:.2f}" for k, v in r.load_averages.items())
            + f" on {os.cpu_count()} CPUs",
        ),
    ]
    table = _table(rows, r.checks())
    if timeline:
        table += "\n\ncircuit of the held deliveries, and requests while open (s into the run):\n"
        table += "\n".join(f"{at:8.1f}  {what}" for at, what in r.circuit_timeline)
    return table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.storm", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--n",
        type=int,
        default=1000,
        help="deliveries per endpoint (with --held: to the healthy endpoint only)",
    )
    parser.add_argument(
        "--held",
        type=int,
        default=0,
        help="run the held-queue scenario with this many deliveries held by an open circuit",
    )
    parser.add_argument(
        "--disable-n",
        type=int,
        default=1000,
        help="with --held: deliveries held by a second endpoint that an operator disables "
        "(0: no disable phase)",
    )
    parser.add_argument(
        "--after-disable-seconds",
        type=float,
        default=30,
        help="with --held: how long to count requests after the disable returned",
    )
    parser.add_argument(
        "--dead-seconds",
        type=float,
        default=None,
        help="how long the circuit stays open (default 20 s); with --held, the measured "
        "window once every delivery is held (default 60 s)",
    )
    parser.add_argument(
        "--cooldown",
        type=float,
        default=None,
        help="circuit cooldown, seconds (default 2; with --held 20)",
    )
    parser.add_argument(
        "--multiplier", type=float, default=1, help="cooldown growth per trip (default: none)"
    )
    parser.add_argument(
        "--max-cooldown",
        type=float,
        default=60,
        help="cooldown cap (held deliveries sleep until the circuit wakes them, not this)",
    )
    parser.add_argument("--concurrency", type=int, default=64, help="publishes in flight")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--timeline",
        action="store_true",
        help="with --held: also print the circuit's phase changes, activities and probes",
    )
    args = parser.parse_args(argv)
    if args.dead_seconds is None:
        args.dead_seconds = 60.0 if args.held else 20.0
    if args.cooldown is None:
        args.cooldown = 20.0 if args.held else 2.0
    return args


async def run(args: argparse.Namespace) -> Report | HeldReport:
    load_before = os.getloadavg()[0]
    metrics_port = free_port()
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        os.environ.pop(var, None)  # the receiver is on loopback
    with tempfile.TemporaryDirectory(prefix="webhooks-storm-") as tmp:
        settings = Settings(
            database_url=f"sqlite:///{Path(tmp) / 'registry.db'}",
            secret_keys=f"storm:{generate_key()}",
            allow_private_destinations=True,
        )
        # The dev server's banner goes to stderr, so stdout carries only the report.
        saved_stdout = os.dup(1)
        os.dup2(2, 1)
        try:
            env = await WorkflowEnvironment.start_local(
                dev_server_existing_path=str(BIN / "temporal"),
                search_attributes=sa.ALL,
                data_converter=pydantic_data_converter,
                dev_server_database_filename=str(Path(tmp) / "temporal.sqlite"),
                dev_server_extra_args=[
                    *SQLITE_PRAGMAS,
                    "--dynamic-config-value",
                    "frontend.enableUpdateWorkflowExecution=true",
                    "--metrics-port",
                    str(metrics_port),
                ],
            )
        finally:
            os.dup2(saved_stdout, 1)
            os.close(saved_stdout)
        try:
            async with open_registry(settings, migrate=True) as registry:
                storm = Storm(env.client, settings, registry, args, metrics_port)
                async with Receiver(storm.on_request) as receiver:
                    report: Report | HeldReport = await (
                        storm.run_held(receiver.url) if args.held else storm.run(receiver.url)
                    )
                    await asyncio.sleep(0.2)  # let the receiver see the workers hang up
        finally:
            await env.shutdown()
    report.load_average_before, report.load_average_after = load_before, os.getloadavg()[0]
    return report


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = datetime.now(UTC)
    report = asyncio.run(run(args))
    if args.json:
        checks = dict(report.checks())
        body = {"started_at": started.isoformat(), **asdict(report), "checks": checks}
        print(json.dumps(body, indent=2))
    else:
        if isinstance(report, HeldReport):
            print(render_held(report, timeline=args.timeline))
        else:
            print(render(report))
    if not all(passed for _, passed in report.checks()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
