"""The registry drives delivery, on a real dev server, real HTTP and real databases: a URL
fixed mid-retry, fan-out by subscription, disable and delete mid-retry, a database outage
longer than the worker's cache, and a delivery started before the registry."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from temporalio.client import Client

from tests.conftest import ACCOUNT, OLD_SECRET, SECRET
from tests.integration import (
    BOUND_SECONDS,
    Cli,
    eventually,
    listed,
    unique,
    verify,
    wait_for_state,
)
from tests.postgres import PostgresCluster
from webhooks.config import Settings
from webhooks.core import search_attributes as sa
from webhooks.core.ids import delivery_id
from webhooks.core.models import (
    DeadLetterReason,
    DeliveryRequest,
    DeliveryResult,
    DeliveryState,
    ErrorKind,
    Outcome,
    RetrySchedule,
)
from webhooks.core.names import DELIVERY_WORKFLOW
from webhooks.core.visibility import quote
from webhooks.dev.receiver import ReceivedRequest, Receiver, Respond
from webhooks.publisher import WebhookPublisher, build_request
from webhooks.registry.models import NewEndpoint
from webhooks.registry.service import EndpointRegistry, open_registry
from worker import running_worker
from workflows.delivery import WebhookDelivery

LONG = RetrySchedule(schedule_seconds=[0, 3600], jitter=0, throttled_min_seconds=0)
"""A first attempt, then a wait only `retry_now` cuts short: the test decides when."""


@pytest.fixture
def cli(client: Client, settings: Settings, registry: EndpointRegistry) -> Cli:
    return Cli(client, settings)


async def create(registry: EndpointRegistry, url: str, **fields: object) -> tuple[str, str]:
    """A new endpoint of the test account; returns its id and secret."""
    created = await registry.create(
        NewEndpoint.model_validate({"account_id": ACCOUNT, "url": url, **fields})
    )
    return created.endpoint.id, created.secret.get_secret_value()


async def settle(settings: Settings) -> None:
    """Let the worker's cached copy of an endpoint expire."""
    await asyncio.sleep(settings.registry_cache_seconds + 0.2)


async def test_a_url_fixed_mid_retry_takes_the_next_attempt_there(
    client: Client, settings: Settings, registry: EndpointRegistry, worker: None, cli: Cli
) -> None:
    async with Receiver(lambda _: Respond(500)) as old, Receiver() as new:
        endpoint_id, secret = await create(registry, old.url + "/broken")
        publisher = WebhookPublisher(client, registry=registry, task_queue=settings.task_queue)
        msg = await publisher.publish(
            endpoint_id=endpoint_id, event_type="stream.fix", data={"n": 1}, retry=LONG
        )
        handle = client.get_workflow_handle_for(WebhookDelivery.run, msg)
        await wait_for_state(handle, DeliveryState.RETRYING)

        fixed = await cli.json("endpoint", "update", endpoint_id, "--url", new.url + "/fixed")
        assert fixed["url"] == new.url + "/fixed"
        await settle(settings)
        await handle.signal(WebhookDelivery.retry_now)
        result = await asyncio.wait_for(handle.result(), BOUND_SECONDS)

    assert result.state is DeliveryState.DELIVERED
    assert result.attempts == 2
    [failed], [landed] = old.requests, new.requests
    assert landed.path == "/fixed"
    assert landed.headers["webhook-id"] == failed.headers["webhook-id"] == msg
    assert landed.body == failed.body
    verify(landed, secret)
    verify(failed, secret)


async def test_fan_out_reaches_exactly_the_subscribed_endpoints_and_republishing_adds_nothing(
    client: Client, settings: Settings, registry: EndpointRegistry, worker: None, cli: Cli
) -> None:
    async with Receiver() as rx:
        settled_only, s1 = await create(
            registry, rx.url + "/settled", event_types=["stream.settled"]
        )
        everything, s2 = await create(registry, rx.url + "/all")
        await create(registry, rx.url + "/ticks", event_types=["payment.tick"])
        paused, _ = await create(registry, rx.url + "/paused")
        await registry.disable(paused)
        await registry.create(NewEndpoint(account_id="acct_other", url=rx.url + "/other"))
        publisher = WebhookPublisher(client, registry=registry, task_queue=settings.task_queue)
        event_id = unique("evt_fan")
        data = {
            "stream_id": "st_1",
            "settlement_id": "set_1",
            "amount": "1.00",
            "currency": "EUR",
            "status": "settled",
            "settled_at": "2026-11-28T12:00:00Z",
        }

        first = await publisher.publish_event_detailed(
            account_id=ACCOUNT, event_type="stream.settled", data=data, event_id=event_id
        )
        expected = {delivery_id(e, event_id): e for e in (settled_only, everything)}
        assert {p.delivery_id: p.endpoint_id for p in first} == expected
        assert all(p.created for p in first)
        for msg in expected:
            handle = client.get_workflow_handle(msg, result_type=DeliveryResult)
            result = await asyncio.wait_for(handle.result(), BOUND_SECONDS)
            assert result.state is DeliveryState.DELIVERED

        again = await publisher.publish_event(
            account_id=ACCOUNT, event_type="stream.settled", data=data, event_id=event_id
        )
        assert sorted(again) == sorted(expected)
        through_cli = await cli(
            "publish", "--account-id", ACCOUNT, "--event-type", "stream.settled",
            "--data", json.dumps(data), "--event-id", event_id,
        )  # fmt: skip
        assert through_cli.exit_code == 0, through_cli.output
        assert sorted(through_cli.stdout.split()) == sorted(expected)
        assert "already published, delivered (nothing new started)" in through_cli.stderr
        await asyncio.sleep(1)  # anything wrongly started would have been sent by now

    by_path: dict[str, list[ReceivedRequest]] = {}
    for request in rx.requests:
        by_path.setdefault(request.path, []).append(request)
    assert sorted(by_path) == ["/all", "/settled"]
    assert [len(v) for v in by_path.values()] == [1, 1]
    verify(by_path["/settled"][0], s1)
    verify(by_path["/all"][0], s2)
    assert by_path["/settled"][0].body == by_path["/all"][0].body  # one event, one body
    found = await listed(client, f"{sa.ACCOUNT_ID.name} = {quote(ACCOUNT)}", expect=2)
    assert {wf.id for wf in found} >= set(expected)


async def test_fan_out_through_the_cli_prints_one_id_per_line(
    client: Client, registry: EndpointRegistry, worker: None, cli: Cli
) -> None:
    async with Receiver() as rx:
        a, _ = await create(registry, rx.url + "/a")
        b, _ = await create(registry, rx.url + "/b")
        event_id = unique("evt_cli")
        published = await cli.json(
            "publish", "--account-id", ACCOUNT, "--event-type", "t.cli", "--data", "{}",
            "--event-id", event_id,
        )  # fmt: skip
        rows = published["deliveries"]
        assert {(r["endpoint_id"], r["delivery_id"], r["created"]) for r in rows} == {
            (a, delivery_id(a, event_id), True),
            (b, delivery_id(b, event_id), True),
        }
        nobody = await cli(
            "publish", "--account-id", "acct_nobody", "--event-type", "t.cli", "--data", "{}"
        )
        assert nobody.exit_code == 0
        assert nobody.stdout == ""
        assert "no enabled endpoint of acct_nobody subscribes to t.cli" in nobody.stderr
        for row in rows:
            handle = client.get_workflow_handle(row["delivery_id"], result_type=DeliveryResult)
            assert (await asyncio.wait_for(handle.result(), BOUND_SECONDS)).state is (
                DeliveryState.DELIVERED
            )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("disable", DeadLetterReason.ENDPOINT_DISABLED),
        ("delete", DeadLetterReason.ENDPOINT_DELETED),
    ],
)
async def test_disable_or_delete_mid_retry_dead_letters_without_another_request(
    client: Client,
    settings: Settings,
    registry: EndpointRegistry,
    worker: None,
    cli: Cli,
    change: str,
    reason: DeadLetterReason,
) -> None:
    async with Receiver(lambda _: Respond(503)) as rx:
        endpoint_id, _ = await create(registry, rx.url)
        publisher = WebhookPublisher(client, registry=registry, task_queue=settings.task_queue)
        msg = await publisher.publish(
            endpoint_id=endpoint_id, event_type="t.mid", data={}, retry=LONG
        )
        handle = client.get_workflow_handle_for(WebhookDelivery.run, msg)
        await wait_for_state(handle, DeliveryState.RETRYING)
        assert (await cli("endpoint", change, endpoint_id)).exit_code == 0
        await settle(settings)
        await handle.signal(WebhookDelivery.retry_now)
        result = await asyncio.wait_for(handle.result(), BOUND_SECONDS)
        assert len(rx.requests) == 1  # the refused attempt sent nothing

    assert result.state is DeliveryState.DEAD_LETTERED
    assert result.dead_letter_reason is reason
    first, refused = await handle.query(WebhookDelivery.attempts)
    assert first.status_code == 503
    assert (refused.outcome, refused.error_kind) == (Outcome.PERMANENT, ErrorKind(reason.value))
    assert result.dead_letter_id is not None
    query = (
        f"{sa.ACCOUNT_ID.name} = {quote(ACCOUNT)} AND "
        f"{sa.DEAD_LETTER_REASON.name} = {quote(reason.value)} AND "
        f"WorkflowId = {quote(result.dead_letter_id)}"
    )
    [letter] = await listed(client, query)
    assert letter.id == result.dead_letter_id


async def test_an_old_style_delivery_finishes_on_the_new_worker(
    client: Client,
    settings: Settings,
    registry: EndpointRegistry,
    worker: None,
    cli: Cli,
    secrets_file: Path,
) -> None:
    """Started before the registry (url + secret_ref in the input, no account): once the
    refs are imported, it signs with the imported secrets and POSTs to its own URL."""
    imported = await cli.json(
        "endpoint", "import", "--secrets-file", str(secrets_file), "--account-id", "acct_old"
    )
    assert [i["secret_ref"] for i in imported["imported"]] == ["default", "rotating"]
    async with Receiver() as rx:
        template = build_request(
            endpoint=(await registry.get(imported["imported"][0]["endpoint_id"])),
            event_type="stream.old",
            data={"n": 1},
            event_id=unique("evt_old"),
        )
        old = DeliveryRequest.model_validate(
            {
                **template.model_dump(exclude={"account_id"}),
                "endpoint_id": "ep_1",  # publishers chose endpoint ids freely back then
                "delivery_id": delivery_id("ep_1", template.event_id),
                "url": rx.url + "/legacy",
                "secret_ref": "rotating",
            }
        )
        handle = await client.start_workflow(
            DELIVERY_WORKFLOW, old, id=old.delivery_id, task_queue=settings.task_queue,
            result_type=DeliveryResult,
        )  # fmt: skip
        result = await asyncio.wait_for(handle.result(), BOUND_SECONDS)
    assert result.state is DeliveryState.DELIVERED
    [request] = rx.requests
    assert request.path == "/legacy"
    assert request.body == old.body.encode()
    verify(request, SECRET)
    verify(request, OLD_SECRET)


# --- the database stopped for longer than the cache -------------------------------------------


@pytest.fixture
async def pg_settings(settings: Settings, postgres: PostgresCluster) -> Settings:
    return settings.model_copy(
        update={
            "database_url": SecretStr(postgres.new_database()),
            "registry_cache_seconds": 0.3,
            "registry_stale_seconds": 1.0,
        }
    )


@pytest.fixture
def restart_postgres(postgres: PostgresCluster) -> Iterator[PostgresCluster]:
    """The cluster, started again even if the test fails while it is stopped."""
    yield postgres
    if postgres.run("pg_ctl", "-D", str(postgres.data / "db"), "status", check=False).returncode:
        postgres.start()


async def test_a_database_outage_longer_than_the_cache_loses_nothing(
    client: Client, pg_settings: Settings, restart_postgres: PostgresCluster
) -> None:
    n = 6
    schedule = RetrySchedule(schedule_seconds=[0] + [1.0] * 29, jitter=0, throttled_min_seconds=0)
    status = [500]  # failing until the database is back, so attempts go on through the outage
    async with (
        open_registry(pg_settings, migrate=True) as registry,
        Receiver(lambda _: Respond(status[0])) as rx,
        running_worker(client, pg_settings),
    ):
        endpoint_id, secret = await create(registry, rx.url)
        publisher = WebhookPublisher(client, registry=registry, task_queue=pg_settings.task_queue)
        ids = [
            await publisher.publish(
                endpoint_id=endpoint_id, event_type="t.outage", data={"i": i}, retry=schedule
            )
            for i in range(n)
        ]
        handles = [client.get_workflow_handle_for(WebhookDelivery.run, i) for i in ids]
        await eventually(lambda: asyncio.sleep(0, len(rx.requests)), lambda seen: seen >= n)

        await asyncio.to_thread(restart_postgres.stop)
        outage = pg_settings.registry_cache_seconds + pg_settings.registry_stale_seconds + 2.5
        await asyncio.sleep(outage)
        await asyncio.to_thread(restart_postgres.start)
        status[0] = 200

        results = [await asyncio.wait_for(h.result(), BOUND_SECONDS * 2) for h in handles]
        tables = [await h.query(WebhookDelivery.attempts) for h in handles]

    assert all(r.state is DeliveryState.DELIVERED for r in results)
    kinds = [a.error_kind for table in tables for a in table]
    assert ErrorKind.REGISTRY_UNAVAILABLE in kinds
    assert sorted(r.delivery_id for r in results) == sorted(ids)
    assert {r.headers["webhook-id"] for r in rx.requests} == set(ids)
    for request in rx.requests:
        verify(request, secret)  # nothing was ever sent unsigned
