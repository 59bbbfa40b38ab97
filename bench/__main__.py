"""Product vs floor, in one run against one embedded Temporal dev server.

    .venv/bin/python -m bench            # default: 3 rounds, 2000 deliveries, ~5 minutes idle
    .venv/bin/python -m bench --quick    # smoke run
    .venv/bin/python -m bench --json     # machine-readable
    .venv/bin/python -m bench --quick --metrics-cost   # the product without vs with metrics

Each round runs the floor, then the product (a fresh task queue and worker each), and for
each measures throughput (N deliveries of a 500-byte body from one publisher with bounded
concurrency) and then publish->receipt latency at a quarter of that throughput. The report
shows medians over rounds (latency percentiles over all rounds' samples) and the
product/floor ratios; progress goes to stderr, the report to stdout. See docs/benchmarks.md.

`--metrics-cost` runs no floor: each round runs the product without, then with, Prometheus
metrics (tracing off, as deployed by default), and reports the CPU per delivery of both.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import compileall
import json
import os
import resource
import signal
import socket
import statistics
import sys
import sysconfig
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from bench import metrics_cost, registry_cost
from bench.floor import FLOOR_WORKFLOW, FloorPost, running_floor_worker, start_floor
from webhooks.codec import generate_key
from webhooks.config import Settings
from webhooks.core import search_attributes as sa
from webhooks.core.ids import delivery_id
from webhooks.core.names import DELIVERY_WORKFLOW
from webhooks.dev.devserver import SQLITE_PRAGMAS
from webhooks.dev.receiver import Behavior, ReceivedRequest, Receiver
from webhooks.publisher import WebhookPublisher, connect, event_body
from webhooks.registry.models import NewEndpoint
from webhooks.registry.service import EndpointRegistry, open_registry
from webhooks.tracing import tracer_of
from worker import running_worker

BIN = Path(sysconfig.get_path("scripts"))
BODY_BYTES = 500
ENDPOINT_ID = "ep_bench"
EVENT_TYPE = "bench.tick"
EVENT_TIME = datetime(2026, 11, 28, 12, 0, 0, 123456, tzinfo=UTC)
"""Fixed (with non-zero microseconds) so every body has the same length."""
SECRET = "whsec_" + base64.b64encode(b"streampay-bench-secret-0123456789").decode()
WARMUP = 20
SYSTEMS = ("floor", "product")
METRICS_COST = ("product", "metrics")
"""`--metrics-cost`: the product without, then with, Prometheus metrics."""
TARGETS = {"throughput_ratio_min": 1.0, "p50_ms_max": 25.0, "p99_ms_max": 100.0}


@dataclass(frozen=True)
class Target:
    """A system under test: start delivery number i, and the `webhook-id` it arrives with."""

    publish: Callable[[int], Awaitable[object]]
    id_of: Callable[[int], str]
    workflow_type: str


def _event_ids() -> tuple[Callable[[int], str], str]:
    """Fresh, fixed-width event ids (so every body has the same length) and their padding."""
    prefix = f"evt_{uuid.uuid4().hex[:8]}_"

    def event_id(i: int) -> str:
        return f"{prefix}{i:07d}"

    bare = event_body(event_id(0), EVENT_TYPE, EVENT_TIME, {"pad": ""})
    return event_id, "x" * (BODY_BYTES - len(bare.encode()))


@dataclass
class Phase:
    """One system's measurements in one round."""

    system: str
    round: int
    deliveries_per_s: float
    latency_rate_per_s: float
    p50_ms: float
    p99_ms: float
    server_cpu_ms_per_delivery: float | None
    bench_cpu_ms_per_delivery: float
    duplicates: int
    """Requests that arrived more than once (at-least-once; expected 0 on this path)."""


@dataclass
class Tracker:
    """Collects receipts of one batch of ids from the shared receiver."""

    expected: set[str]
    received: dict[str, float] = field(default_factory=dict)
    duplicates: int = 0
    wrong_size: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def on_request(self, request: ReceivedRequest) -> None:
        rid = request.headers.get("webhook-id", "")
        if rid not in self.expected:
            return
        if rid in self.received:
            self.duplicates += 1
            return
        self.received[rid] = request.received_at
        if len(request.body) != BODY_BYTES:
            self.wrong_size += 1
        if len(self.received) == len(self.expected):
            self.done.set()

    async def wait(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self.done.wait(), seconds)
        except TimeoutError:
            missing = len(self.expected) - len(self.received)
            raise RuntimeError(f"{missing} of {len(self.expected)} never arrived") from None
        if self.wrong_size:
            raise RuntimeError(f"{self.wrong_size} bodies were not {BODY_BYTES} bytes")


class Bench:
    def __init__(
        self,
        client: Client,
        settings: Settings,
        registry: EndpointRegistry,
        args: argparse.Namespace,
        metered: Client | None = None,
    ) -> None:
        self.client = client
        self.metered = metered
        """A client of the same server whose runtime records and serves metrics."""
        self.receiver: Receiver  # set once the receiver listens
        self.settings = settings
        self.registry = registry
        self.args = args
        self.latencies: dict[str, list[float]] = {s: [] for s in (*SYSTEMS, *METRICS_COST)}
        """Every latency sample per system, over all rounds."""
        self.trackers: list[Tracker] = []
        """This phase's batches; kept until the phase ends so late duplicates are counted."""
        self.server_pid = _child_pid("temporal")

    def on_request(self, request: ReceivedRequest, _: Behavior) -> None:
        for tracker in self.trackers:
            tracker.on_request(request)

    # -- the two systems ----------------------------------------------------------------

    @asynccontextmanager
    async def product(self, task_queue: str, client: Client | None = None) -> AsyncIterator[Target]:
        client = client or self.client
        settings = self.settings.model_copy(update={"task_queue": task_queue})
        # Same client as the worker: that is what lets eager workflow start kick in.
        publisher = WebhookPublisher(client, registry=self.registry, task_queue=task_queue)
        event_id, pad = _event_ids()

        async def publish(i: int) -> str:
            return await publisher.publish(
                endpoint_id=ENDPOINT_ID,
                event_type=EVENT_TYPE,
                data={"pad": pad},
                event_id=event_id(i),
                timestamp=EVENT_TIME,
            )

        async with running_worker(client, settings):
            yield Target(
                publish, lambda i: delivery_id(ENDPOINT_ID, event_id(i)), DELIVERY_WORKFLOW
            )

    @asynccontextmanager
    async def floor(self, task_queue: str) -> AsyncIterator[Target]:
        url = self.receiver.url + "/hook"
        event_id, pad = _event_ids()

        def id_of(i: int) -> str:
            return delivery_id(ENDPOINT_ID, event_id(i))

        async def publish(i: int) -> None:
            body = event_body(event_id(i), EVENT_TYPE, EVENT_TIME, {"pad": pad})
            await start_floor(self.client, task_queue, FloorPost(id_of(i), url, body))

        async with running_floor_worker(self.client, task_queue):
            yield Target(publish, id_of, FLOOR_WORKFLOW)

    # -- measurements -------------------------------------------------------------------

    async def run_phase(self, system: str, round_no: int) -> Phase:
        task_queue = f"bench-{system}-{round_no}-{uuid.uuid4().hex[:6]}"
        running: Callable[[str], AbstractAsyncContextManager[Target]] = {
            "floor": self.floor,
            "product": self.product,
            "metrics": lambda queue: self.product(queue, self.metered),
        }[system]
        self.trackers = []
        async with running(task_queue) as ids:
            await self.throughput(ids, 0, WARMUP)
            await self.drain(task_queue, ids.workflow_type)
            server0, bench0 = self.server_cpu(), _self_cpu()
            rate = await self.throughput(ids, WARMUP, self.args.n)
            # CPU until the workflows have closed: completing them is part of each delivery.
            await self.drain(task_queue, ids.workflow_type)
            server1, bench1 = self.server_cpu(), _self_cpu()
            latencies = await self.latency(ids, WARMUP + self.args.n, self.args.latency_n, rate / 4)
            await self.drain(task_queue, ids.workflow_type)
        self.latencies[system] += latencies
        p50, p99 = _percentile(latencies, 50), _percentile(latencies, 99)
        server_ms = None
        if server0 is not None and server1 is not None:
            server_ms = (server1 - server0) * 1000 / self.args.n
        phase = Phase(
            system=system,
            round=round_no,
            deliveries_per_s=rate,
            latency_rate_per_s=rate / 4,
            p50_ms=p50,
            p99_ms=p99,
            server_cpu_ms_per_delivery=server_ms,
            bench_cpu_ms_per_delivery=(bench1 - bench0) * 1000 / self.args.n,
            duplicates=sum(t.duplicates for t in self.trackers),
        )
        self.log(
            f"round {round_no} {system:7s} {rate:7.1f} deliveries/s   "
            f"p50 {p50:6.1f} ms  p99 {p99:6.1f} ms at {rate / 4:.1f}/s   "
            f"bench CPU {phase.bench_cpu_ms_per_delivery:5.1f} ms/delivery"
        )
        return phase

    async def throughput(self, ids: Target, start: int, n: int) -> float:
        """Publish n deliveries with bounded concurrency; deliveries/s until all received."""
        tracker = self.track([ids.id_of(i) for i in range(start, start + n)])
        next_i = start
        t0 = time.time()

        async def publisher() -> None:
            nonlocal next_i
            while next_i < start + n:
                i = next_i
                next_i += 1
                await ids.publish(i)

        workers = [publisher() for _ in range(min(self.args.concurrency, n))]
        await asyncio.gather(*workers)
        await tracker.wait(60 + n / 5)
        return n / (max(tracker.received.values()) - t0)

    async def latency(self, ids: Target, start: int, n: int, rate: float) -> list[float]:
        """Publish at a steady rate (open loop); publish->receipt of each, in ms, sorted."""
        tracker = self.track([ids.id_of(i) for i in range(start, start + n)])
        sent: dict[str, float] = {}
        tasks: list[asyncio.Task[None]] = []

        async def one(i: int) -> None:
            sent[ids.id_of(i)] = time.time()
            await ids.publish(i)

        t0 = time.monotonic()
        for k in range(n):
            delay = t0 + k / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(start + k)))
        await asyncio.gather(*tasks)
        await tracker.wait(60)
        return sorted((tracker.received[i] - sent[i]) * 1000 for i in tracker.expected)

    def track(self, ids: list[str]) -> Tracker:
        tracker = Tracker(expected=set(ids))
        self.trackers.append(tracker)
        return tracker

    async def drain(self, task_queue: str, workflow_type: str) -> None:
        """Wait until every delivery on the queue has closed, so phases do not overlap.

        By type: the product may also run a (long-lived) circuit workflow on the queue.
        """
        query = (
            f'TaskQueue = "{task_queue}" AND WorkflowType = "{workflow_type}" '
            'AND ExecutionStatus = "Running"'
        )
        deadline = time.monotonic() + 120
        while (await self.client.count_workflows(query)).count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"workflows on {task_queue} still running after 120 s")
            await asyncio.sleep(0.2)

    def server_cpu(self) -> float | None:
        """CPU seconds the dev server has used so far (Linux /proc), None if unknown."""
        if self.server_pid is None:
            return None
        try:
            fields = Path(f"/proc/{self.server_pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def own_cpu(self) -> float:
        """CPU seconds of the bench process and its dev server."""
        return _self_cpu() + (self.server_cpu() or 0.0)

    def log(self, line: str) -> None:
        print(line, file=sys.stderr, flush=True)


def _percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    rank = max(1, round(pct / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _precompile() -> None:
    """Deployed workers run from bytecode (pip compiles on install). Without .pyc files
    (a fresh checkout, PYTHONDONTWRITEBYTECODE=1) the workflow sandbox compiles the workflow
    modules from source again for every workflow run: ~2-4 ms of CPU per delivery that
    would measure the checkout, not the product."""
    root = Path(__file__).resolve().parent.parent
    for package in ("workflows", "activities", "webhooks", "bench"):
        compileall.compile_dir(root / package, quiet=1)


def _machine_busy() -> float:
    """CPU seconds the whole machine has spent busy since boot (Linux /proc/stat)."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _child_pid(name: str) -> int | None:
    """Our child process with this command name (the dev server), via /proc."""
    try:
        tasks = list(Path("/proc/self/task").iterdir())
        for task in tasks:
            for pid in (task / "children").read_text().split():
                if Path(f"/proc/{pid}/comm").read_text().strip() == name:
                    return int(pid)
    except OSError:
        return None
    return None


# -- report ----------------------------------------------------------------------------


def summarize(phases: list[Phase], latencies: dict[str, list[float]]) -> dict[str, Any]:
    """Per system: medians over rounds (as the brief's figures are), plus the latency
    percentiles over all rounds' samples; then product/floor ratios."""
    medians: dict[str, dict[str, float | None]] = {}
    for system in ("product", "floor"):
        mine = [p for p in phases if p.system == system]
        medians[system] = {}
        for key in (
            "deliveries_per_s",
            "p50_ms",
            "p99_ms",
            "latency_rate_per_s",
            "server_cpu_ms_per_delivery",
            "bench_cpu_ms_per_delivery",
        ):
            values = [getattr(p, key) for p in mine if getattr(p, key) is not None]
            medians[system][key] = statistics.median(values) if values else None
        samples = sorted(latencies[system])
        medians[system]["all_samples_p50_ms"] = _percentile(samples, 50) if samples else None
        medians[system]["all_samples_p99_ms"] = _percentile(samples, 99) if samples else None
        medians[system]["latency_samples"] = len(samples)
        medians[system]["duplicates"] = sum(p.duplicates for p in mine)
    product, floor = medians["product"], medians["floor"]

    def ratio(key: str) -> float | None:
        a, b = product[key], floor[key]
        return a / b if a is not None and b else None

    ratios = {
        k: ratio(k)
        for k in (
            "deliveries_per_s",
            "p50_ms",
            "p99_ms",
            "all_samples_p50_ms",
            "all_samples_p99_ms",
        )
    }
    p50, p99, tput = product["p50_ms"], product["p99_ms"], ratios["deliveries_per_s"]
    return {
        "summary": medians,
        "ratios": ratios,
        "targets": TARGETS,
        "targets_met": {
            "throughput_ratio": tput is not None and tput >= TARGETS["throughput_ratio_min"],
            "p50_ms": p50 is not None and p50 <= TARGETS["p50_ms_max"],
            "p99_ms": p99 is not None and p99 <= TARGETS["p99_ms_max"],
        },
    }


def summarize_metrics_cost(phases: list[Phase]) -> dict[str, Any]:
    """Medians per system over rounds, and what metrics add to the CPU per delivery."""
    medians = {
        system: {
            key: statistics.median(getattr(p, key) for p in phases if p.system == system)
            for key in ("bench_cpu_ms_per_delivery", "deliveries_per_s", "p50_ms", "p99_ms")
        }
        for system in METRICS_COST
    }
    off, on = (medians[s]["bench_cpu_ms_per_delivery"] for s in METRICS_COST)
    return {
        "summary": medians,
        "cpu_ratio": on / off if off else None,
        "cpu_extra_ms_per_delivery": on - off,
    }


def render_metrics_cost(summary: dict[str, Any], config: dict[str, Any]) -> str:
    off, on = (summary["summary"][s] for s in METRICS_COST)
    lines = [
        f"{config['rounds']} rounds of {config['n']} deliveries, the product without and with "
        f"Prometheus metrics (tracing {config['tracing']}): medians over rounds",
        f"{'':34s}{'no metrics':>12s}{'metrics':>10s}{'ratio':>8s}",
    ]
    for label, key in (
        ("bench CPU ms/delivery", "bench_cpu_ms_per_delivery"),
        ("deliveries/s", "deliveries_per_s"),
        ("latency p50 ms", "p50_ms"),
        ("latency p99 ms", "p99_ms"),
    ):
        ratio = on[key] / off[key] if off[key] else float("nan")
        lines.append(f"{label:34s}{off[key]:>12.2f}{on[key]:>10.2f}{ratio:>7.3f}x")
    lines.append(
        f"metrics cost {summary['cpu_extra_ms_per_delivery']:+.2f} ms of CPU per delivery "
        f"({summary['cpu_ratio'] - 1:+.1%} of the bench process: publisher + worker + receiver, "
        "of which only the worker's part differs)"
    )
    own = summary["own_calls_us_per_delivery"]
    extra_us = own["recorded"] - own["noop"]
    lines.append(
        f"the product's own metric calls, measured alone: {own['recorded']:.1f} us per "
        f"delivery recorded vs {own['noop']:.1f} us on the no-op meter = {extra_us:+.1f} us, "
        f"{extra_us / 1000 / off['bench_cpu_ms_per_delivery']:.2%} of the bench CPU per delivery"
    )
    lines.append(
        f"{config['wall_seconds']:.0f} s on {config['cpus']} CPUs; other processes used "
        f"{config['other_processes_cpus']:.2f} CPUs on average (should be ~0); "
        f"1-min load average before/after {config['load_average_before']:.2f} / "
        f"{config['load_average_after']:.2f}"
    )
    return "\n".join(lines)


def render(summary: dict[str, Any], config: dict[str, Any]) -> str:
    product, floor = summary["summary"]["product"], summary["summary"]["floor"]
    ratios, met = summary["ratios"], summary["targets_met"]

    def num(value: float | None, fmt: str = "{:.1f}") -> str:
        return "-" if value is None else fmt.format(value)

    def mark(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    rows = [
        ("deliveries/s", "deliveries_per_s", f">= 1.0x floor  {mark(met['throughput_ratio'])}"),
        ("latency p50 ms", "p50_ms", f"<= 25 ms  {mark(met['p50_ms'])}"),
        ("latency p99 ms", "p99_ms", f"<= 100 ms  {mark(met['p99_ms'])}"),
        ("  all samples p50 ms", "all_samples_p50_ms", "informational"),
        ("  all samples p99 ms", "all_samples_p99_ms", "informational"),
        ("latency load /s", "latency_rate_per_s", "quarter of max"),
        ("server CPU ms/deliv", "server_cpu_ms_per_delivery", "informational"),
        ("bench CPU ms/deliv", "bench_cpu_ms_per_delivery", "publisher+worker+receiver"),
    ]
    lines = [
        f"{config['rounds']} rounds of {config['n']} deliveries ({BODY_BYTES}-byte body, "
        f"{config['concurrency']} publishes in flight): medians over rounds, latency "
        f"over {config['latency_n']} deliveries per round",
        f"{'':22s}{'product':>10s}{'floor':>10s}{'product/floor':>15s}  target",
    ]
    for label, key, note in rows:
        r = ratios.get(key)
        lines.append(
            f"{label:22s}{num(product[key]):>10s}{num(floor[key]):>10s}"
            f"{num(r, '{:.2f}x'):>15s}  {note}"
        )
    lines.append(
        f"duplicates at the receiver: product {product['duplicates']:.0f}, "
        f"floor {floor['duplicates']:.0f}; "
        f"peak RSS of the bench process {config['peak_rss_mb']:.0f} MB (informational)"
    )
    lines.append(
        f"{config['wall_seconds']:.0f} s on {config['cpus']} CPUs; other processes used "
        f"{config['other_processes_cpus']:.2f} CPUs on average (should be ~0); "
        f"1-min load average before/after {config['load_average_before']:.2f} / "
        f"{config['load_average_after']:.2f}"
    )
    reg = summary.get("registry")
    if reg:
        lines.append(
            f"registry: a cached lookup {reg['hit_us']:.1f} us, a database read "
            f"{reg['read_ms']:.2f} ms (once per endpoint per {reg['cache_ttl_seconds']:g} s): "
            f"{reg['worker_lookup_ms_per_delivery'] * 1000:.1f} us per delivery in the worker = "
            f"{_pct(reg['worker_lookup_share_of_bench_cpu'])} of the bench CPU per delivery; "
            f"the publisher's check {reg['publish_check_ms']:.2f} ms per publish = "
            f"{_pct(reg['publish_check_share_of_bench_cpu'])}; a fan-out's lookup "
            f"{reg['fan_out_lookup_ms']:.2f} ms per event"
        )
    return "\n".join(lines)


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{share:.1%}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="deliveries per throughput run")
    parser.add_argument("--latency-n", type=int, default=200, help="deliveries per latency run")
    parser.add_argument("--rounds", type=int, help="floor+product rounds (medians; default 3)")
    parser.add_argument("--concurrency", type=int, default=64, help="publishes in flight")
    parser.add_argument("--quick", action="store_true", help="smoke run: n=300, latency-n=100")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--metrics",
        action="store_true",
        help="serve Prometheus metrics from the bench's client, as a deployed worker does",
    )
    parser.add_argument(
        "--metrics-cost",
        action="store_true",
        help="no floor: each round runs the product without, then with, metrics",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.latency_n = 300, 100
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    return args


async def run(args: argparse.Namespace) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    _precompile()
    # SIGTERM unwinds like Ctrl-C, through the `finally` that stops the dev server.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        os.environ.pop(var, None)  # the receiver is on loopback; never go through a proxy
    with tempfile.TemporaryDirectory(prefix="webhooks-bench-") as tmp:
        settings = Settings(
            database_url=f"sqlite:///{Path(tmp) / 'registry.db'}",
            secret_keys=f"bench:{generate_key()}",
            allow_private_destinations=True,
        )
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(BIN / "temporal"),
            search_attributes=sa.ALL,
            data_converter=pydantic_data_converter,
            dev_server_database_filename=str(Path(tmp) / "temporal.sqlite"),
            dev_server_extra_args=SQLITE_PRAGMAS,
        )
        try:
            client = env.client
            metered = None
            if args.metrics or args.metrics_cost:
                # Everything (SDK and product metrics) recorded and served, as in production.
                metered = await connect(
                    settings.model_copy(
                        update={
                            "temporal_address": env.client.service_client.config.target_host,
                            "metrics_bind_address": f"127.0.0.1:{_free_port()}",
                        }
                    )
                )
                client = env.client if args.metrics_cost else metered
            async with AsyncExitStack() as stack, open_registry(settings, migrate=True) as registry:
                bench = Bench(client, settings, registry, args, metered)
                receiver = await stack.enter_async_context(Receiver(on_request=bench.on_request))
                bench.receiver = receiver
                await registry.create(
                    NewEndpoint(
                        id=ENDPOINT_ID, account_id="acct_bench", url=receiver.url + "/hook"
                    ),
                    secret=SecretStr(SECRET),
                )
                phases: list[Phase] = []
                start = (time.monotonic(), _machine_busy(), bench.own_cpu())
                for round_no in range(1, args.rounds + 1):
                    for system in METRICS_COST if args.metrics_cost else SYSTEMS:
                        phases.append(await bench.run_phase(system, round_no))
                # Let the receiver's connection handlers see the workers' clients hang up:
                # cancelling them instead makes Python 3.11's asyncio log a spurious error.
                await asyncio.sleep(0.2)
                elapsed = time.monotonic() - start[0]
                others = _machine_busy() - start[1] - (bench.own_cpu() - start[2])
                cost = await registry_cost.measure(
                    registry, ENDPOINT_ID, settings.registry_cache_seconds
                )
        finally:
            await env.shutdown()
    config = {
        "metrics": args.metrics,
        "metrics_cost": args.metrics_cost,
        "tracing": "off" if tracer_of(metered or client) is None else "on",
        "n": args.n,
        "latency_n": args.latency_n,
        "rounds": args.rounds,
        "concurrency": args.concurrency,
        "body_bytes": BODY_BYTES,
        "cpus": os.cpu_count(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        # Anything else running skews both systems; alternating rounds only evens it out.
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
        # CPUs' worth used by everything but the bench and its server, on average.
        "other_processes_cpus": max(0.0, others / elapsed),
        "wall_seconds": elapsed,
    }
    if args.metrics_cost:
        recorded_us, noop_us = metrics_cost.measure()
        return {
            "config": config,
            "rounds": [asdict(p) for p in phases],
            **summarize_metrics_cost(phases),
            "own_calls_us_per_delivery": {"recorded": recorded_us, "noop": noop_us},
        }
    summary = summarize(phases, bench.latencies)
    product = summary["summary"]["product"]
    worker_ms = cost.worker_ms_per_delivery(
        settings.registry_cache_seconds, product["deliveries_per_s"] or 1.0
    )
    cpu = product["bench_cpu_ms_per_delivery"] or 0.0
    registry_report = {
        **asdict(cost),
        "cache_ttl_seconds": settings.registry_cache_seconds,
        "worker_lookup_ms_per_delivery": worker_ms,
        "worker_lookup_share_of_bench_cpu": worker_ms / cpu if cpu else None,
        "publish_check_share_of_bench_cpu": cost.publish_check_ms / cpu if cpu else None,
    }
    return {
        "config": config,
        "rounds": [asdict(p) for p in phases],
        **summary,
        "registry": registry_report,
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # The dev server (which inherits our stdout) and the SDK core's own logger write to
    # file descriptor 1: send all of that to stderr, keep the real stdout for the report
    # (so that `--json` stays parseable).
    sys.stdout.flush()
    report = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    try:
        result = asyncio.run(run(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; the dev server and workers are stopped", file=sys.stderr)
        raise SystemExit(130) from None
    with report:
        if args.json:
            print(json.dumps(result, indent=2), file=report)
        elif args.metrics_cost:
            print(render_metrics_cost(result, result["config"]), file=report)
        else:
            print(render(result, result["config"]), file=report)


if __name__ == "__main__":
    main()
