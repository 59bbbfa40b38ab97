"""`webhooks dlq` end to end: the CLI (in-process, as an operator runs it) against the real
dev server, with real dead letters from a real receiver."""

from __future__ import annotations

import asyncio
import getpass
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

from tests.conftest import EndpointPublisher
from tests.integration import BOUND_SECONDS, Cli, eventually, fast, unique
from webhooks.config import Settings
from webhooks.core.models import (
    DeadLetterReason,
    DeadLetterState,
    DeadLetterView,
    DeliveryState,
    RedeliverRequest,
    RetrySchedule,
)
from webhooks.dev.receiver import ReceivedRequest, Receiver, Respond
from webhooks.ops.dead_letters import (
    DeadLetterFilter,
    act_on,
    count_open_by_reason,
    list_dead_letters,
)
from workflows.dead_letter import DeadLetter
from workflows.delivery import WebhookDelivery

EVENT = "dlq.cli"


@pytest.fixture
def cli(client: Client, settings: Settings) -> Cli:
    return Cli(client, settings)


class Switch:
    """A receiver's answer that the test flips: failing at first, then recovered."""

    def __init__(self, status: int = 500) -> None:
        self.status = status
        self.ok: list[ReceivedRequest] = []

    def __call__(self, request: ReceivedRequest) -> Respond:
        if 200 <= self.status < 300:
            self.ok.append(request)
        return Respond(self.status)


async def dead_letters(
    client: Client,
    publisher: EndpointPublisher,
    url: str,
    endpoint: str,
    count: int,
    *,
    event_type: str = EVENT,
    dead_letter_on_4xx: bool = False,
    retry: RetrySchedule | None = None,
) -> list[str]:
    """Publish `count` events that the receiver fails; return their dead letters' ids."""

    async def one(index: int) -> str:
        delivery_id = await publisher.publish(
            endpoint_id=endpoint,
            url=url,
            event_type=event_type,
            data={"n": index},
            event_id=unique("evt"),
            retry=retry or fast(0),
            dead_letter_on_4xx=dead_letter_on_4xx,
        )
        handle = client.get_workflow_handle_for(WebhookDelivery.run, delivery_id)
        result = await handle.result()
        assert result.state is DeliveryState.DEAD_LETTERED
        assert result.dead_letter_id is not None
        return result.dead_letter_id

    return list(
        await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(count))), BOUND_SECONDS)
    )


async def open_ids(client: Client, where: DeadLetterFilter, expect: int) -> set[str]:
    """The open dead letters matching `where`, once visibility shows exactly `expect`."""
    rows = await eventually(
        lambda: list_dead_letters(client, where), lambda rows: len(rows) == expect
    )
    return {row.dead_letter_id for row in rows}


def handles(client: Client, ids: Iterable[str]) -> list[WorkflowHandle[DeadLetter, DeadLetterView]]:
    return [client.get_workflow_handle_for(DeadLetter.run, i) for i in ids]


async def redelivered_runs(handle: WorkflowHandle[DeadLetter, DeadLetterView]) -> int:
    """How many redelivery runs a dead letter started, from its event history."""
    started = EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED
    return len([e async for e in handle.fetch_history_events() if e.event_type == started])


async def signals_received(handle: WorkflowHandle[DeadLetter, DeadLetterView]) -> int:
    signalled = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    return len([e async for e in handle.fetch_history_events() if e.event_type == signalled])


async def signal_times_of(handle: WorkflowHandle[DeadLetter, DeadLetterView]) -> list[float]:
    signalled = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    return [
        e.event_time.ToDatetime().timestamp()
        async for e in handle.fetch_history_events()
        if e.event_type == signalled
    ]


async def all_delivered(client: Client, ids: Iterable[str]) -> None:
    """Wait until the redelivery run of every dead letter (`{delivery}-dlq-0`) delivered."""

    async def one(dead_letter_id: str) -> None:
        delivery_id = dead_letter_id.removesuffix("-dlq-0")
        view = await client.get_workflow_handle_for(DeadLetter.run, dead_letter_id).result()
        assert view.redelivery_id == delivery_id
        run = client.get_workflow_handle_for(
            WebhookDelivery.run, delivery_id, run_id=view.redelivery_run_id
        )
        assert (await run.result()).state is DeliveryState.DELIVERED

    await asyncio.wait_for(asyncio.gather(*(one(i) for i in ids)), BOUND_SECONDS)


async def test_bulk_redelivery_is_rate_limited_and_dry_run_acts_on_nothing(
    client: Client, worker: None, publisher: EndpointPublisher, cli: Cli
) -> None:
    endpoint, rate, total = unique("ep_bulk"), 10, 30
    switch = Switch(500)
    async with Receiver(switch) as rx:
        ids = await dead_letters(client, publisher, rx.url, endpoint, total)
        assert await open_ids(client, DeadLetterFilter(endpoint_id=endpoint), total) == set(ids)
        count = await cli.json("dlq", "count", "--endpoint", endpoint)
        assert count == {"open": {"exhausted": total}, "total": total}

        dry = await cli.json("dlq", "redeliver", "--endpoint", endpoint, "--dry-run")
        assert dry["dry_run"] is True
        assert sorted(dry["would_signal"]) == sorted(ids)
        # A dry run sends no signal at all: every dead letter is untouched.
        assert (
            await asyncio.gather(*(signals_received(h) for h in handles(client, ids)))
            == [0] * total
        )
        assert len(rx.requests) == total

        switch.status = 200
        # Over a filter it is the console's durable bulk job, followed to its end.
        result = await cli.json(
            "dlq", "redeliver", "--endpoint", endpoint, "--rate", str(rate), "--by", "ops"
        )
        assert result["job_id"].startswith("bulk-redeliver-")
        progress = result["progress"]
        assert (progress["total"], progress["signalled"], progress["failed"]) == (total, total, 0)
        assert (progress["done"], progress["cancelled"]) == (True, False)
        await all_delivered(client, ids)

    # Every dead letter was redelivered exactly once...
    delivery_ids = {i.removesuffix("-dlq-0") for i in ids}
    assert Counter(r.headers["webhook-id"] for r in switch.ok) == dict.fromkeys(delivery_ids, 1)
    views = await asyncio.gather(*(h.query(DeadLetter.entry) for h in handles(client, ids)))
    assert {(v.state, v.acted_by) for v in views} == {(DeadLetterState.REDELIVERED, "ops")}
    # ...the signals went out at no more than `rate` in any second...
    signal_times = [t for h in handles(client, ids) for t in await signal_times_of(h)]
    assert_paced(signal_times, rate)
    # ...so the endpoint was not stampeded: the redeliveries reached it spread over about
    # (total - 1) / rate seconds. (Per-second counts at the receiver also carry Temporal's
    # scheduling jitter, which a loaded machine can bunch by a second or so.)
    arrivals = sorted(r.received_at for r in switch.ok)
    assert arrivals[-1] - arrivals[0] >= 0.7 * (total - 1) / rate, arrivals
    # The closed dead letters left the queue.
    assert await open_ids(client, DeadLetterFilter(endpoint_id=endpoint), 0) == set()


def assert_paced(times: list[float], rate: int) -> None:
    """Any `rate + 1` consecutive signals span at least about a second (a sliding window)."""
    times = sorted(times)
    spans = [later - first for first, later in zip(times, times[rate:], strict=False)]
    assert spans, "too few signals to judge the rate"
    # 0.9: the server stamps a signal when it arrives, a few ms after it was sent.
    assert min(spans) >= 0.9, [round(s, 3) for s in spans]


async def test_interrupted_bulk_run_resumes_without_duplicates(
    client: Client, worker: None, publisher: EndpointPublisher, cli: Cli
) -> None:
    endpoint, total = unique("ep_resume"), 20
    switch = Switch(500)
    async with Receiver(switch) as rx:
        ids = await dead_letters(client, publisher, rx.url, endpoint, total)
        where = DeadLetterFilter(endpoint_id=endpoint)
        assert await open_ids(client, where, total) == set(ids)
        switch.status = 200

        # Half of them were redelivered one by one before (an operator, an earlier run).
        for dead_letter_id in ids[:10]:
            await act_on(client, dead_letter_id, RedeliverRequest(requested_by="first"))
        # The bulk job at once: the listing may still show some of the first half as open.
        progress = (await cli.json("dlq", "redeliver", "--endpoint", endpoint, "--rate", "50"))[
            "progress"
        ]
        assert 10 <= progress["signalled"] + progress["already_closed"] <= total
        assert progress["failed"] == 0
        await all_delivered(client, ids)

        # And once more when nothing is left: nothing to do.
        await open_ids(client, where, 0)
        again = await cli("dlq", "redeliver", "--endpoint", endpoint)
        assert again.exit_code == 0, again.output
        assert ": 0 signalled, 0 already closed, 0 failed" in again.stdout

    delivery_ids = {i.removesuffix("-dlq-0") for i in ids}
    assert Counter(r.headers["webhook-id"] for r in switch.ok) == dict.fromkeys(delivery_ids, 1)
    assert len(rx.requests) == 2 * total
    hs = handles(client, ids)
    assert await asyncio.gather(*(redelivered_runs(h) for h in hs)) == [1] * total
    views = await asyncio.gather(*(h.query(DeadLetter.entry) for h in hs))
    assert {v.acted_by for v in views[:10]} == {"first"}


async def test_list_filters_and_counts_by_reason(
    client: Client, worker: None, publisher: EndpointPublisher, cli: Cli
) -> None:
    endpoint, other = unique("ep_list"), unique("ep_list")
    async with (
        Receiver(lambda _: Respond(500)) as failing,
        Receiver(lambda _: Respond(410)) as gone,
        Receiver(lambda _: Respond(400)) as rejecting,
    ):
        [exhausted] = await dead_letters(client, publisher, failing.url, endpoint, 1)
        await open_ids(client, DeadLetterFilter(endpoint_id=endpoint), 1)
        between = datetime.now(UTC)
        [gone_id] = await dead_letters(
            client, publisher, gone.url, endpoint, 1, event_type="dlq.cli.other"
        )
        [rejected] = await dead_letters(
            client, publisher, rejecting.url, endpoint, 1, dead_letter_on_4xx=True
        )
        [elsewhere] = await dead_letters(client, publisher, failing.url, other, 1)
    await open_ids(client, DeadLetterFilter(endpoint_id=endpoint), 3)
    await open_ids(client, DeadLetterFilter(endpoint_id=other), 1)

    async def listed(*filters: str) -> set[str]:
        answer = await cli.json("dlq", "list", *filters)
        return {row["dead_letter_id"] for row in answer["dead_letters"]}

    everything = await cli.json("dlq", "list", "--endpoint", endpoint)
    assert {row["dead_letter_id"] for row in everything["dead_letters"]} == {
        exhausted,
        gone_id,
        rejected,
    }
    assert everything["counts"] == {"exhausted": 1, "gone": 1, "rejected": 1}
    assert f"WebhookEndpointId='{endpoint}'" in everything["query"]
    row = next(r for r in everything["dead_letters"] if r["dead_letter_id"] == gone_id)
    assert row["endpoint_id"] == endpoint
    assert row["event_type"] == "dlq.cli.other"
    assert row["reason"] == "gone"
    assert row["state"] == "dead_lettered"

    assert await listed("--endpoint", endpoint, "--event-type", EVENT) == {exhausted, rejected}
    assert await listed("--endpoint", endpoint, "--reason", "gone") == {gone_id}
    # A naive time is UTC; an aware one is taken as given.
    naive = between.replace(tzinfo=None).isoformat()
    assert await listed("--endpoint", endpoint, "--since", naive) == {gone_id, rejected}
    assert await listed("--endpoint", endpoint, "--until", between.isoformat()) == {exhausted}
    assert await listed("--event-type", EVENT, "--since", naive, "--endpoint", endpoint) == {
        rejected
    }
    assert await listed("--endpoint", other) == {elsewhere}
    assert await listed("--event-type", "dlq.cli.other", "--since", naive) == {gone_id}

    table = await cli("dlq", "list", "--endpoint", endpoint)
    assert table.exit_code == 0, table.output
    for dead_letter_id in (exhausted, gone_id, rejected):
        assert dead_letter_id in table.stdout
    assert "3 dead letter(s) — exhausted: 1, gone: 1, rejected: 1" in table.stdout
    empty = await cli("dlq", "list", "--endpoint", unique("ep_none"))
    assert "0 dead letter(s) — none" in empty.stdout

    # Counts per reason, server-side: what an alert polls.
    assert await cli.json("dlq", "count", "--endpoint", endpoint) == {
        "open": {"exhausted": 1, "gone": 1, "rejected": 1},
        "total": 3,
    }
    assert await count_open_by_reason(
        client, DeadLetterFilter(endpoint_id=endpoint, event_type=EVENT)
    ) == {"exhausted": 1, "rejected": 1}
    counted = await cli("dlq", "count", "--endpoint", endpoint)
    assert counted.exit_code == 0, counted.output
    assert [line.split() for line in counted.stdout.splitlines() if "gone" in line] == [
        ["│", "gone", "│", "1", "│"]
    ]

    # Discard one, by id: it leaves the open list but stays listable with --all.
    discarded = await cli("dlq", "discard", exhausted, "--note", "customer asked", "--by", "ops")
    assert discarded.exit_code == 0, discarded.output
    assert "discard: 1 signalled, 0 already closed, 0 failed" in discarded.stdout
    await open_ids(client, DeadLetterFilter(endpoint_id=endpoint), 2)
    states = {
        row["dead_letter_id"]: row["state"]
        for row in (await cli.json("dlq", "list", "--endpoint", endpoint, "--all"))["dead_letters"]
    }
    assert states == {exhausted: "discarded", gone_id: "dead_lettered", rejected: "dead_lettered"}
    assert await listed("--endpoint", endpoint) == {gone_id, rejected}
    assert await listed("--endpoint", endpoint, "--reason", "exhausted") == set()

    # Discard in bulk by filter, after a dry run that shows what it would do.
    dry = await cli("dlq", "discard", "--endpoint", endpoint, "--reason", "gone", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "dry run: would discard 1 dead letter(s)" in dry.stdout
    assert gone_id in dry.stdout
    assert (
        await client.get_workflow_handle_for(DeadLetter.run, gone_id).query(DeadLetter.entry)
    ).state is DeadLetterState.OPEN
    bulk = await cli.json("dlq", "discard", "--endpoint", endpoint, "--reason", "gone")
    assert (bulk["progress"]["total"], bulk["progress"]["signalled"]) == (1, 1)
    view = await client.get_workflow_handle_for(DeadLetter.run, gone_id).result()
    assert view.state is DeadLetterState.DISCARDED
    assert view.acted_by == getpass.getuser()  # the operator's user name by default


async def test_show_redeliver_and_discard_one_by_id(
    client: Client, worker: None, publisher: EndpointPublisher, cli: Cli
) -> None:
    endpoint = unique("ep_show")
    switch = Switch(500)
    async with Receiver(switch) as rx:
        first, second = await dead_letters(
            client, publisher, rx.url, endpoint, 2, retry=fast(0, 0.1)
        )

        shown = await cli.json("dlq", "show", first)
        view = DeadLetterView.model_validate(shown)
        assert view.state is DeadLetterState.OPEN
        assert view.entry.dead_letter_id == first
        assert view.entry.reason is DeadLetterReason.EXHAUSTED
        assert [(a.number, a.status_code) for a in view.entry.attempts] == [(1, 500), (2, 500)]
        assert view.entry.request.endpoint_id == endpoint

        table = await cli("dlq", "show", first)
        assert table.exit_code == 0, table.output
        delivery_id = first.removesuffix("-dlq-0")
        assert f"{first} (dead_lettered)  reason exhausted" in table.stdout
        assert f"delivery {delivery_id}: {EVENT} -> {endpoint}" in table.stdout
        assert len([line for line in table.stdout.splitlines() if " 500 " in line]) == 2

        switch.status = 200
        redelivered = await cli("dlq", "redeliver", first, "--by", "alice")
        assert redelivered.exit_code == 0, redelivered.output
        assert "redeliver: 1 signalled, 0 already closed, 0 failed" in redelivered.stdout
        await all_delivered(client, [first])
        after = await cli("dlq", "show", first)
        assert f"{first} (redelivered)" in after.stdout
        assert "redelivered by alice at " in after.stdout
        assert f"-> {delivery_id}" in after.stdout

        discarded = await cli.json("dlq", "discard", second, "--note", "duplicate event")
        assert discarded["signalled"] == [second]
        await client.get_workflow_handle_for(DeadLetter.run, second).result()
        after = await cli("dlq", "show", second)
        assert f"{second} (discarded)" in after.stdout
        assert ": duplicate event" in after.stdout

        # Redelivering what was discarded does nothing: it is closed.
        late = await cli.json("dlq", "redeliver", second)
        assert late == {"signalled": [], "already_closed": [second], "failed": {}}
        assert (
            await client.get_workflow_handle_for(DeadLetter.run, second).query(DeadLetter.entry)
        ).state is DeadLetterState.DISCARDED
    assert [r.headers["webhook-id"] for r in switch.ok] == [delivery_id]


async def test_clear_errors(client: Client, worker: None, cli: Cli) -> None:
    missing = unique("msg_missing") + "-dlq-0"
    for command in (["show", missing], ["redeliver", missing], ["discard", missing]):
        result = await cli("dlq", *command)
        assert result.exit_code == 2, result.output
        assert f"no dead letter with id '{missing}'" in result.stderr
        assert "Traceback" not in result.output

    for action in ("redeliver", "discard"):
        result = await cli("dlq", action)
        assert result.exit_code == 2, result.output
        assert "name a dead letter id, or at least one filter such as --endpoint" in result.stderr

    result = await cli("dlq", "list", "--reason", "bogus")
    assert result.exit_code == 2
    assert "bogus" in result.stderr

    result = await cli("dlq", "redeliver", "--endpoint", "ep_1", "--rate", "1000")
    assert result.exit_code == 2, result.output  # the job's limit, said before it starts


async def test_a_signal_the_server_refuses_is_reported_and_exits_1(
    client: Client, worker: None, publisher: EndpointPublisher, cli: Cli
) -> None:
    async with Receiver(lambda _: Respond(500)) as rx:
        [dead_letter] = await dead_letters(client, publisher, rx.url, unique("ep_refused"), 1)
    # Temporal refuses a signal whose payload is over its 2 MB blob limit.
    result = await cli("dlq", "redeliver", dead_letter, "--by", "x" * 3_000_000)
    assert result.exit_code == 1, result.output
    assert "redeliver: 0 signalled, 0 already closed, 1 failed" in result.stdout
    assert f"  {dead_letter}: " in result.stderr
    entry = await client.get_workflow_handle_for(DeadLetter.run, dead_letter).query(
        DeadLetter.entry
    )
    assert entry.state is DeadLetterState.OPEN
