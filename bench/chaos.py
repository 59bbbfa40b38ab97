"""The fault campaign: many deliveries through every fault a deployment meets, then proof
that nothing was lost.

    .venv/bin/python -m bench.chaos                  # 5,000 deliveries, 20 endpoints, ~10 min
    .venv/bin/python -m bench.chaos --deliveries 300 # a quick run (--events is the same)
    .venv/bin/python -m bench.chaos --ci             # the CI-sized campaign (~2 minutes)
    .venv/bin/python -m bench.chaos --soak 30m       # keep publishing for 30 minutes
    .venv/bin/python -m bench.chaos --json

Everything is real and in its own process: the Temporal dev server on a SQLite file, two
`webhooks worker` processes, the registry on a throwaway PostgreSQL 15 cluster (SQLite when
PostgreSQL is not installed: then the database outage is skipped and the report says so),
and a flaky receiver (about 30% 500, 10% hangs past the send timeout, 5% dropped
connections, the rest 200; one endpoint answers 503 to everything for the first minute).
While publishing, the campaign SIGKILLs each worker once (and restarts it), SIGKILLs the dev
server and restarts it on the same file, restarts both workers with SIGTERM one after the
other, and stops the registry database for a while.

Then, from the receiver's log and Temporal's visibility, it checks every event: delivered
(a 2xx answered to a request whose signature verifies with the endpoint's secret) or
dead-lettered (a `DeadLetter` with a reason); none missing; none still running after the
drain bound; every duplicate 2xx counted and attributed to a fault it was in flight at; no
workflow task failing repeatedly (the dev server's `workflow_task_attempt` histogram, read
before its restart and at the end: no workflow task needed more than
`REPEATED_TASK_ATTEMPTS` attempts). Exit code 0 only when all of that holds. See
docs/reliability.md. `tests/integration/test_chaos.py` runs the CI-sized campaign.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

from standardwebhooks import Webhook
from temporalio.client import Client, WorkflowExecutionStatus

from bench import waits
from bench.fleet import Fleet, FleetConfig
from bench.waits import EXCESS_BOUND_SECONDS, Waits
from webhooks.core.models import DeliveryResult, DeliveryState, RetrySchedule
from webhooks.core.names import DEAD_LETTER_WORKFLOW, DELIVERY_WORKFLOW
from webhooks.core.visibility import quote
from webhooks.dev.receiver import Behavior, Drop, Hang, ReceivedRequest, Receiver, Respond

CHAOS_RETRY = RetrySchedule(
    schedule_seconds=[0, 1, 2, 5, 10, 20, 30, 60, 60, 60], jitter=0.2, throttled_min_seconds=5
)
"""About four minutes of retries: with 45% of attempts failing, a few deliveries in a
thousand exhaust them and dead-letter, which the campaign wants to see too."""
CI_RETRY = RetrySchedule(
    schedule_seconds=[0, 0.5, 1, 1, 2, 2, 3, 3, 4, 4], jitter=0.2, throttled_min_seconds=1
)
"""About 20 s of retries, so the CI-sized campaign drains within its two minutes."""
REPEATED_TASK_ATTEMPTS = 5
"""A workflow task that needed more attempts than this was failing, not just interrupted
(a kill or a restart costs a task one or two attempts)."""


@dataclass
class Faults:
    """When each fault happens, in seconds from the start of publishing."""

    kill_worker: tuple[float, ...] = (20.0, 45.0)
    kill_server: float = 70.0
    rolling_restart: float = 100.0
    registry_down: float = 130.0
    registry_down_seconds: float = 20.0
    endpoint_down_seconds: float = 60.0

    def last(self) -> float:
        return max(
            *self.kill_worker,
            self.kill_server,
            self.rolling_restart,
            self.registry_down + self.registry_down_seconds,
        )

    @classmethod
    def ci(cls) -> Faults:
        """The CI-sized campaign: one worker SIGKILL, a server restart, a SIGTERM restart."""
        return cls(
            kill_worker=(8.0,),
            kill_server=20.0,
            rolling_restart=35.0,
            registry_down=-1.0,
            registry_down_seconds=0.0,
            endpoint_down_seconds=15.0,
        )


@dataclass
class Config:
    events: int = 5000
    endpoints: int = 20
    workers: int = 2
    publish_seconds: float = 150.0
    """Publishing is spread over this long (the faults happen meanwhile)."""
    soak_seconds: float = 0.0
    drain_bound_seconds: float = 600.0
    http_timeout_seconds: float = 5.0
    seed: int = 1
    state: Path | None = None
    """Keep the logs and databases here instead of a temporary folder."""
    faults: Faults = field(default_factory=Faults)
    retry: RetrySchedule = CHAOS_RETRY

    @classmethod
    def ci(cls, events: int = 300) -> Config:
        """A few hundred deliveries, one worker SIGKILL, one server restart, one SIGTERM
        rolling restart: the same checks in about two minutes."""
        return cls(
            events=events,
            endpoints=5,
            publish_seconds=40.0,
            drain_bound_seconds=120.0,
            http_timeout_seconds=2.0,
            faults=Faults.ci(),
            retry=CI_RETRY,
        )


@dataclass
class Report:
    events: int = 0
    published: int = 0
    delivered: int = 0
    dead_lettered: int = 0
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    running_after_drain: int = 0
    unverified_2xx: int = 0
    duplicates: int = 0
    duplicate_causes: dict[str, int] = field(default_factory=dict)
    unexplained_duplicates: list[str] = field(default_factory=list)
    requests: int = 0
    publish_retries: int = 0
    workflow_task_attempts: dict[str, int] = field(default_factory=dict)
    """Workflow tasks by the attempt that completed them (`1`, `2`, `3-5`, `>5`)."""
    faults: list[tuple[float, str]] = field(default_factory=list)
    fault_windows: list[tuple[float, float]] = field(default_factory=list)
    """Each fault's (start, end) in unix time: not counted as waiting (`bench.waits`)."""
    waits: Waits = field(default_factory=Waits)
    drain_seconds_after_last_fault: float = 0.0
    worker_rss_mb: list[tuple[float, list[float]]] = field(default_factory=list)
    registry: str = ""
    wall_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (
            self.waits.max_hold_while_closed_seconds <= EXCESS_BOUND_SECONDS
            and not self.missing
            and self.running_after_drain == 0
            and self.unverified_2xx == 0
            and not self.unexplained_duplicates
            and self.delivered + self.dead_lettered == self.events
            and self.workflow_task_attempts.get(f">{REPEATED_TASK_ATTEMPTS}", 0) == 0
        )


@dataclass
class Seen:
    """What the receiver saw for one delivery id."""

    requests: int = 0
    ok_at: list[float] = field(default_factory=list)
    """When each 2xx was answered (after the request's body arrived)."""


class FlakyReceiver:
    """Answers like a bad day on the internet, and keeps a log to check against."""

    def __init__(self, config: Config, secrets: dict[str, str], started: float) -> None:
        self._rng = random.Random(config.seed)
        self._secrets = secrets
        self._started = started
        self._down_until = started + config.faults.endpoint_down_seconds
        self._hang = config.http_timeout_seconds * 2
        self.seen: defaultdict[str, Seen] = defaultdict(Seen)
        self.unverified_2xx = 0
        self.requests = 0

    def respond(self, request: ReceivedRequest) -> Behavior:
        self.requests += 1
        endpoint = request.path.rsplit("/", 1)[-1]
        delivery = request.headers.get("webhook-id", "")
        seen = self.seen[delivery]
        seen.requests += 1
        if endpoint.endswith("-0") and time.time() < self._down_until:
            return Respond(503)
        roll = self._rng.random()
        if roll < 0.30:
            return Respond(500)
        if roll < 0.40:
            return Hang(self._hang)
        if roll < 0.45:
            return Drop()
        try:
            Webhook(self._secrets[endpoint]).verify(request.body, request.headers)
        except Exception:
            self.unverified_2xx += 1
            return Respond(400)
        seen.ok_at.append(time.time())
        return Respond(200)


def endpoint_of(event_id: str, config: Config) -> str:
    """The endpoint `publish_all` sent event `evt_chaos_<n>` to."""
    return f"ep_chaos_{int(event_id.rsplit('_', 1)[1]) % config.endpoints}"


async def publish_all(fleet: Fleet, config: Config, report: Report) -> dict[str, str]:
    """Publish every event at an even pace; returns delivery id -> event id.

    Publishing retries until Temporal accepts (the server restarts meanwhile): a publish is
    idempotent, which is the contract a transactional outbox relies on.
    """
    ids: dict[str, str] = {}
    total = config.events
    interval = config.publish_seconds / max(1, total)
    start = time.monotonic()
    pending: set[asyncio.Task[None]] = set()

    async def one(n: int) -> None:
        event_id = f"evt_chaos_{n}"
        endpoint = n % config.endpoints
        while True:
            try:
                delivery_id = await fleet.publish(endpoint, event_id, config.retry)
                break
            except Exception:
                report.publish_retries += 1
                await asyncio.sleep(0.5)
        ids[delivery_id] = event_id
        report.published += 1

    for n in range(total):
        delay = start + n * interval - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(n))
        pending.add(task)
        task.add_done_callback(pending.discard)
        if len(pending) > 200:
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    if pending:
        await asyncio.gather(*pending)
    return ids


async def inject_faults(fleet: Fleet, config: Config, report: Report, t0: float) -> None:
    """Run the fault schedule; each fault is logged with its time for attribution."""
    f = config.faults
    plan: list[tuple[float, str, Callable[[], Awaitable[None]]]] = [
        (at, f"SIGKILL worker {i % config.workers}", partial(fleet.kill_worker, i))
        for i, at in enumerate(f.kill_worker)
    ]
    plan.append((f.kill_server, "SIGKILL dev server", partial(fleet.kill_server, 3.0)))
    plan.append((f.rolling_restart, "SIGTERM rolling restart", fleet.rolling_restart))
    if f.registry_down >= 0 and fleet.registry_can_stop:
        stop = partial(fleet.stop_registry, f.registry_down_seconds)
        plan.append((f.registry_down, "registry stopped", stop))
    for at, name, action in sorted(plan, key=lambda p: p[0]):
        delay = t0 + at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        report.faults.append((round(time.monotonic() - t0, 1), name))
        print(f"[{time.monotonic() - t0:6.1f} s] {name}", file=sys.stderr)
        began = time.time()
        await action()
        report.fault_windows.append((began, time.time()))


async def drain(client_of: Callable[[], Client], bound: float) -> int:
    """Wait until no delivery is running, up to `bound` seconds; returns how many still run."""
    deadline = time.monotonic() + bound
    query = f"WorkflowType={quote(DELIVERY_WORKFLOW)} AND ExecutionStatus='Running'"
    running = -1
    while time.monotonic() < deadline:
        try:
            running = (await client_of().count_workflows(query)).count
        except Exception:
            running = -1
        if running == 0:
            return 0
        await asyncio.sleep(2)
    return running


async def outcomes(client: Client, ids: dict[str, str]) -> dict[str, DeliveryResult | None]:
    """Each delivery's result (None: no closed, successful run of it exists)."""
    found: dict[str, DeliveryResult | None] = {}
    slots = asyncio.Semaphore(50)

    async def one(delivery_id: str) -> None:
        async with slots:
            handle = client.get_workflow_handle(delivery_id, result_type=DeliveryResult)
            try:
                description = await handle.describe()
                if description.status != WorkflowExecutionStatus.COMPLETED:
                    found[delivery_id] = None
                    return
                found[delivery_id] = await handle.result()
            except Exception:
                found[delivery_id] = None

    await asyncio.gather(*(one(i) for i in ids))
    return found


async def dead_letter_reasons(client: Client) -> dict[str, str]:
    """delivery id -> reason, for every dead letter on the server."""
    reasons: dict[str, str] = {}
    query = f"WorkflowType={quote(DEAD_LETTER_WORKFLOW)}"
    async for wf in client.list_workflows(query):
        delivery_id = wf.id.split("-dlq-", 1)[0]
        reason = wf.search_attributes.get("WebhookDeadLetterReason")
        reasons[delivery_id] = str(reason[0]) if isinstance(reason, list) and reason else "?"
    return reasons


def attribute_duplicates(
    seen: dict[str, Seen], faults: list[tuple[float, str]], t0_wall: float, window: float
) -> tuple[int, Counter[str], list[str]]:
    """Count second 2xx's and name the fault each first 2xx was in flight at.

    A duplicate is explained when its first 2xx was answered within `window` seconds before
    a kill or restart: the worker (or server) died before the attempt's result was recorded,
    so the attempt ran again. Anything else is unexplained and fails the campaign.
    """
    duplicates = 0
    causes: Counter[str] = Counter()
    unexplained: list[str] = []
    for delivery_id, s in seen.items():
        if len(s.ok_at) < 2:
            continue
        duplicates += len(s.ok_at) - 1
        first = s.ok_at[0] - t0_wall
        cause = next((name for at, name in faults if first - 1.0 <= at <= first + window), None)
        if cause is None:
            unexplained.append(delivery_id)
        else:
            causes[cause] += len(s.ok_at) - 1
    return duplicates, causes, unexplained


def task_attempts(snapshots: list[str]) -> dict[str, int]:
    """Workflow tasks by the attempt that completed them, summed over the server's lives,
    from its `workflow_task_attempt` histogram (cumulative buckets `le`)."""
    buckets: Counter[float] = Counter()
    for text in snapshots:
        for line in text.splitlines():
            if line.startswith("workflow_task_attempt_bucket{") and 'le="' in line:
                le = line.split('le="', 1)[1].split('"', 1)[0]
                bound = float("inf") if le == "+Inf" else float(le)
                buckets[bound] += int(float(line.rsplit(" ", 1)[1]))

    def upto(bound: float) -> int:
        return max((n for b, n in buckets.items() if b <= bound), default=0)

    total = buckets[float("inf")]
    return {
        "1": upto(1),
        "2": upto(2) - upto(1),
        f"3-{REPEATED_TASK_ATTEMPTS}": upto(REPEATED_TASK_ATTEMPTS) - upto(2),
        f">{REPEATED_TASK_ATTEMPTS}": total - upto(REPEATED_TASK_ATTEMPTS),
    }


async def sample_rss(fleet: Fleet, report: Report, t0: float, every: float) -> None:
    while True:
        report.worker_rss_mb.append((round(time.monotonic() - t0), fleet.worker_rss_mb()))
        await asyncio.sleep(every)


async def campaign(config: Config) -> Report:
    report = Report(events=config.events)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="webhooks-chaos-") as tmp:
        state = config.state or Path(tmp)
        state.mkdir(parents=True, exist_ok=True)
        fleet_config = FleetConfig(
            state=state,
            endpoints=config.endpoints,
            workers=config.workers,
            http_timeout_seconds=config.http_timeout_seconds,
        )
        secrets: dict[str, str] = {}
        receiver = FlakyReceiver(config, secrets, time.time())
        async with (
            Receiver(receiver.respond) as rx,
            Fleet(fleet_config, rx.url) as fleet,
        ):
            secrets.update(fleet.secrets)
            report.registry = fleet.registry_kind
            t0, t0_wall = time.monotonic(), time.time()
            sampler = asyncio.create_task(sample_rss(fleet, report, t0, 30))
            publishing = asyncio.create_task(publish_all(fleet, config, report))
            faults = asyncio.create_task(inject_faults(fleet, config, report, t0))
            ids = await publishing
            await faults
            last_fault = time.monotonic()
            report.running_after_drain = await drain(
                lambda: fleet.client, config.drain_bound_seconds
            )
            report.drain_seconds_after_last_fault = round(time.monotonic() - last_fault, 1)
            sampler.cancel()
            with suppress(asyncio.CancelledError):
                await sampler
            report.worker_rss_mb.append((round(time.monotonic() - t0), fleet.worker_rss_mb()))
            results = await outcomes(fleet.client, ids)
            reasons = await dead_letter_reasons(fleet.client)
            report.waits = await waits.measure(
                fleet.client,
                {
                    d: f"ep_chaos_{int(e.rsplit('_', 1)[1]) % config.endpoints}"
                    for d, e in ids.items()
                },
                report.fault_windows,
            )
            await fleet.read_server_metrics()
            report.workflow_task_attempts = task_attempts(fleet.server_metrics)
        report.requests = receiver.requests
        report.unverified_2xx = receiver.unverified_2xx
        check(report, ids, results, reasons, receiver.seen)
        report.duplicates, causes, report.unexplained_duplicates = attribute_duplicates(
            receiver.seen, report.faults, t0_wall, config.http_timeout_seconds * 3
        )
        report.duplicate_causes = dict(causes)
    report.wall_seconds = round(time.monotonic() - started, 1)
    return report


def check(
    report: Report,
    ids: dict[str, str],
    results: dict[str, DeliveryResult | None],
    reasons: dict[str, str],
    seen: dict[str, Seen],
) -> None:
    """Every event is delivered (a verified 2xx seen) or dead-lettered (with a reason)."""
    dl_reasons: Counter[str] = Counter()
    for delivery_id, event_id in ids.items():
        result = results.get(delivery_id)
        got_2xx = bool(seen.get(delivery_id, Seen()).ok_at)
        if result is not None and result.state is DeliveryState.DELIVERED and got_2xx:
            report.delivered += 1
        elif (
            result is not None
            and result.state is DeliveryState.DEAD_LETTERED
            and (delivery_id in reasons)
        ):
            report.dead_lettered += 1
            dl_reasons[reasons[delivery_id]] += 1
        else:
            report.missing.append(f"{event_id} ({delivery_id}): {result!r}, 2xx seen: {got_2xx}")
    report.dead_letter_reasons = dict(dl_reasons)


def render(report: Report) -> str:
    lines = [
        f"events {report.events}: delivered {report.delivered}, dead-lettered "
        f"{report.dead_lettered} {report.dead_letter_reasons or ''}",
        f"missing {len(report.missing)} (must be 0); running after the drain bound "
        f"{report.running_after_drain} (must be 0); unverified 2xx {report.unverified_2xx}",
        f"duplicates {report.duplicates}: {report.duplicate_causes or 'none'}; unexplained "
        f"{len(report.unexplained_duplicates)} (must be 0)",
        f"requests at the receiver {report.requests}; publish retries (server down) "
        f"{report.publish_retries}; registry on {report.registry}",
        f"workflow tasks by completing attempt {report.workflow_task_attempts} "
        f"(>{REPEATED_TASK_ATTEMPTS} must be 0)",
        "faults: " + "; ".join(f"{at:.0f} s {name}" for at, name in report.faults),
        f"longest hold while the circuit was closed: "
        f"{report.waits.max_hold_while_closed_seconds:.1f} s over {report.waits.holds} holds "
        f"(must be <= {EXCESS_BOUND_SECONDS:g} s) {report.waits.worst_hold}; circuits opened "
        f"on {report.waits.endpoints_opened or 'none'}; unmeasured {report.waits.unmeasured}",
        f"longest wait beyond the schedule, holds and queue: "
        f"{report.waits.max_excess_seconds:.1f} s over {report.waits.waits} waits "
        f"{report.waits.worst}; longest workflow-task queue {report.waits.max_queue_seconds:.1f} s",
        f"drained {report.drain_seconds_after_last_fault:.0f} s after the last fault; "
        f"wall {report.wall_seconds:.0f} s",
    ]
    if report.worker_rss_mb:
        first, last = report.worker_rss_mb[0], report.worker_rss_mb[-1]
        lines.append(f"worker RSS MB at {first[0]} s {first[1]}, at {last[0]} s {last[1]}")
        if len(report.worker_rss_mb) > 2:  # a soak: the curve, at most a dozen points
            step = max(1, len(report.worker_rss_mb) // 12)
            curve = report.worker_rss_mb[::step]
            lines.append("worker RSS MB over time: " + ", ".join(f"{t} s {m}" for t, m in curve))
    lines += [f"  missing: {m}" for m in report.missing[:10]]
    lines += [f"  unexplained duplicate: {d}" for d in report.unexplained_duplicates[:10]]
    lines.append("OK" if report.ok else "FAILED")
    return "\n".join(lines)


def parse_duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)


def parse_args(argv: list[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", "--deliveries", dest="events", type=int, default=5000)
    parser.add_argument("--ci", action="store_true", help="the CI-sized campaign")
    parser.add_argument("--endpoints", type=int, default=20)
    parser.add_argument("--publish-seconds", type=float, default=150.0)
    parser.add_argument("--soak", type=parse_duration, default=0.0, help="e.g. 30m")
    parser.add_argument("--drain-bound", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--state", type=Path, help="keep logs and databases in this folder")
    args = parser.parse_args(argv)
    if args.ci:
        config = Config.ci()
        config.seed, config.state = args.seed, args.state
        config_json[0] = args.json
        return config
    config = Config(
        events=args.events,
        endpoints=args.endpoints,
        publish_seconds=args.publish_seconds,
        drain_bound_seconds=args.drain_bound,
        seed=args.seed,
        soak_seconds=args.soak,
        state=args.state,
    )
    if args.soak:
        # A soak publishes at the default pace for its whole length, faults as usual.
        config.events = int(args.events / args.publish_seconds * args.soak)
        config.publish_seconds = args.soak
    config_json[0] = args.json
    return config


config_json = [False]


def main(argv: list[str] | None = None) -> None:
    config = parse_args(argv)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        os.environ.pop(var, None)
    report = asyncio.run(campaign(config))
    if config_json[0]:
        print(json.dumps(asdict(report) | {"ok": report.ok}, indent=2))
    else:
        print(render(report))
    raise SystemExit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
