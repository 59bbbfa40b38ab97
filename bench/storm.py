"""The retry storm: N deliveries to a dead endpoint, then recovery, in one run.

    .venv/bin/python -m bench.storm              # default: 1,000 deliveries, ~1.5-2 minutes
    .venv/bin/python -m bench.storm --n 300      # quicker
    .venv/bin/python -m bench.storm --json       # machine-readable

Against its own embedded dev server, with one worker (circuit on, short cooldowns) and one
receiver: first N deliveries to a healthy endpoint (the healthy throughput), then N to an
endpoint that answers 500 to everything. Once its circuit has been open for a while the
endpoint recovers (answers 200) and every waiting delivery drains. It reports the HTTP
requests the dead endpoint received before its circuit opened and while it was open, the
signals the circuit workflow received (every run of it), the gate checks the waiting
deliveries made, and the drain rate after recovery against the healthy throughput.
See docs/circuit.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from bench.__main__ import BIN, SECRET, _child_pid
from webhooks.codec import generate_key
from webhooks.config import Settings
from webhooks.core import search_attributes as sa
from webhooks.core.circuit import CircuitConfig, CircuitPhase, CircuitSnapshot
from webhooks.core.ids import circuit_id
from webhooks.core.models import DeliveryResult, DeliveryState, RetrySchedule
from webhooks.dev.devserver import SQLITE_PRAGMAS
from webhooks.dev.receiver import ReceivedRequest, Receiver, Respond
from webhooks.publisher import WebhookPublisher
from webhooks.registry.errors import EndpointNotFoundError
from webhooks.registry.models import NewEndpoint
from webhooks.registry.service import EndpointRegistry, open_registry
from worker import running_worker

HEALTHY, DEAD = "ep_storm_healthy", "ep_storm_dead"
EVENT_TYPE = "bench.storm"
STORM_RETRY = RetrySchedule(
    schedule_seconds=[0, 1, 2, 4, 8, 15], max_attempts=100, jitter=0.2, throttled_min_seconds=0
)
"""Aggressive on purpose: without a circuit each delivery would try every 15 s or sooner."""
SAMPLE = 50
"""Waiting deliveries whose histories are read to count gate checks (reading all is slow)."""


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
    load_average_before: float = 0.0
    load_average_after: float = 0.0


class Storm:
    def __init__(
        self,
        client: Client,
        settings: Settings,
        registry: EndpointRegistry,
        args: argparse.Namespace,
    ) -> None:
        self.client = client
        self.registry = registry
        self.args = args
        self.endpoints = {HEALTHY: Endpoint(healthy=True), DEAD: Endpoint(healthy=False)}
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

    async def publish(self, endpoint: str, url: str, n: int) -> list[str]:
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

        for start in range(0, n, self.args.concurrency):
            step = self.args.concurrency
            await asyncio.gather(*(one(i) for i in range(start, min(start + step, n))))
        return ids

    async def circuit_state(self) -> CircuitSnapshot | None:
        try:
            snapshot: CircuitSnapshot = await self.client.get_workflow_handle(
                circuit_id(DEAD)
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
            await asyncio.wait_for(healthy.done.wait(), 60 + n / 5)
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
            await asyncio.sleep(self.args.dead_seconds - settle)
            cpu1 = self.server_cpu()

            # 3. Recovery.
            dead.healthy = True
            flip = self.mark("dead: endpoint answers 200 again")
            await asyncio.wait_for(dead.done.wait(), 120 + n / 5)
            delivered = sorted(dead.delivered.values())
            self.mark(f"dead: all {n} delivered")
            results = await asyncio.gather(*(self.result(d) for d in ids))
            await self.drain()
            self.mark("drained")
            idle0 = self.server_cpu()
            await asyncio.sleep(5)
            idle_load = _per_second(idle0, self.server_cpu(), 5)
            signals, runs, events = await self.circuit_history()
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
            circuit_signals=signals,
            circuit_runs=runs,
            circuit_history_events=events,
            signals_per_second=round(
                signals / (delivered[-1] - self.marks_abs("dead: publishing")), 2
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
        )

    def marks_abs(self, name: str) -> float:
        return self.t0 + self.marks[name]

    async def until_open(self) -> CircuitSnapshot:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            snapshot = await self.circuit_state()
            if snapshot and snapshot.phase in (CircuitPhase.OPEN, CircuitPhase.HALF_OPEN):
                return snapshot
            await asyncio.sleep(0.5)
        raise RuntimeError("the dead endpoint's circuit never opened")

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

    async def circuit_history(self) -> tuple[int, int, int]:
        """Signals and history events over every run of the dead endpoint's circuit."""
        signals = runs = events = 0
        query = f"WorkflowId='{circuit_id(DEAD)}'"
        async for wf in self.client.list_workflows(query):
            runs += 1
            handle = self.client.get_workflow_handle(wf.id, run_id=wf.run_id)
            async for event in handle.fetch_history_events():
                events += 1
                if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
                    signals += 1
        return signals, runs, events

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
        (
            "1-min load average before / after",
            f"{r.load_average_before:.2f} / {r.load_average_after:.2f} on {os.cpu_count()} CPUs",
        ),
    ]
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.storm", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--n", type=int, default=1000, help="deliveries per endpoint")
    parser.add_argument(
        "--dead-seconds", type=float, default=20, help="how long the circuit stays open"
    )
    parser.add_argument("--cooldown", type=float, default=2, help="circuit cooldown, seconds")
    parser.add_argument(
        "--multiplier", type=float, default=1, help="cooldown growth per trip (default: none)"
    )
    parser.add_argument(
        "--max-cooldown",
        type=float,
        default=60,
        help="cooldown cap: also how long waiting deliveries sleep between checks",
    )
    parser.add_argument("--concurrency", type=int, default=64, help="publishes in flight")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> Report:
    load_before = os.getloadavg()[0]
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
                ],
            )
        finally:
            os.dup2(saved_stdout, 1)
            os.close(saved_stdout)
        try:
            async with open_registry(settings, migrate=True) as registry:
                storm = Storm(env.client, settings, registry, args)
                async with Receiver(storm.on_request) as receiver:
                    report = await storm.run(receiver.url)
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
        print(json.dumps({"started_at": started.isoformat(), **asdict(report)}, indent=2))
    else:
        print(render(report))


if __name__ == "__main__":
    main()
