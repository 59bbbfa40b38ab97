"""A worker on a namespace without our search attributes registers them before polling,
instead of failing (and re-sending) every workflow task; and it takes on no more sends at
once than it is configured for."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from tests.conftest import BIN, EndpointPublisher
from tests.integration import BOUND_SECONDS, fast, unique
from webhooks.config import Settings
from webhooks.core import search_attributes as sa
from webhooks.core.models import Attempt, DeliveryResult, DeliveryState, ErrorKind
from webhooks.dev.receiver import Behavior, Hang, ReceivedRequest, Receiver, Respond
from webhooks.registry.errors import SchemaVersionError, SecretKeysError
from webhooks.registry.migrate import schema_status
from webhooks.registry.store import create_engine
from worker import ensure_search_attributes, running_worker


async def test_worker_registers_missing_search_attributes(
    settings: Settings, publisher: EndpointPublisher
) -> None:
    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN / "temporal"),
        data_converter=pydantic_data_converter,
    ) as bare:
        client = bare.client
        request = ListSearchAttributesRequest(namespace=client.namespace)
        before = await client.operator_service.list_search_attributes(request)
        assert not {k.name for k in sa.ALL} & set(before.custom_attributes)

        async with running_worker(client, settings), Receiver() as rx:
            after = await client.operator_service.list_search_attributes(request)
            assert {k.name for k in sa.ALL} <= set(after.custom_attributes)
            delivery_id = await publisher.on(client, settings.task_queue).publish(
                endpoint_id="ep_setup", url=rx.url, event_type="test.setup", data={}
            )
            handle = client.get_workflow_handle(delivery_id, result_type=DeliveryResult)
            assert (await handle.result()).state is DeliveryState.DELIVERED
        # Idempotent: a second worker finds them all and changes nothing.
        await ensure_search_attributes(client)
        assert len(rx.requests) == 1


async def test_the_worker_migrates_an_empty_registry_and_refuses_a_newer_one(
    client: Client, settings: Settings
) -> None:
    async with running_worker(client, settings):
        pass  # an empty registry: migrated at start
    engine = create_engine(settings.registry_url())
    try:
        assert (await schema_status(engine)).up_to_date
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = 'f00d'"))
    finally:
        await engine.dispose()
    with pytest.raises(SchemaVersionError, match="revision 'f00d', newer than this release"):
        async with running_worker(client, settings):
            pass


async def test_the_worker_refuses_to_start_without_the_key_ring(
    client: Client, settings: Settings
) -> None:
    keyless = settings.model_copy(update={"secret_keys": None})
    with pytest.raises(SecretKeysError, match="needs WEBHOOKS_SECRET_KEYS"):
        async with running_worker(client, keyless):
            pass


async def test_a_worker_runs_at_most_max_concurrent_sends_at_once(
    client: Client, settings: Settings, publisher: EndpointPublisher
) -> None:
    # The first six requests hang past the send timeout: each holds a send slot for 5 s,
    # and the other deliveries wait in Temporal's queue meanwhile. Then all are answered.
    settings = settings.model_copy(update={"max_concurrent_sends": 2, "http_timeout_seconds": 5})
    publisher = publisher.on(client, settings.task_queue)
    hung = 6

    def answer(_: ReceivedRequest) -> Behavior:
        return Hang(90) if len(rx.requests) <= hung else Respond(200)

    async with Receiver(answer) as rx, running_worker(client, settings):
        ids = [
            await publisher.publish(
                endpoint_id=unique("ep_cap"),
                url=rx.url,
                event_type="test.cap",
                data={"i": i},
                retry=fast(0, 0.5, 0.5),
            )
            for i in range(hung)
        ]
        handles = [client.get_workflow_handle(i, result_type=DeliveryResult) for i in ids]
        results = await asyncio.wait_for(
            asyncio.gather(*(h.result() for h in handles)), 4 * BOUND_SECONDS
        )
        # Asked once every delivery has finished: a query needs a workflow-task slot too,
        # and while sends hang, both are taken.
        recorded = [await h.query("attempts", result_type=list[Attempt]) for h in handles]
    assert [r.state for r in results] == [DeliveryState.DELIVERED] * hung
    # Judged by the order of the attempts themselves, not by how long the test waits: an
    # attempt starts only once fewer than two others are still open.
    attempts = [a for each in recorded for a in each]
    assert sum(a.error_kind is ErrorKind.TIMEOUT for a in attempts) == hung
    assert _most_at_once(attempts) == 2


def _most_at_once(attempts: list[Attempt]) -> int:
    """The most attempts open at one moment (an attempt that ends as another starts is
    not counted with it)."""
    edges = sorted(
        edge
        for a in attempts
        for edge in (
            (a.started_at.timestamp() + a.duration_ms / 1000, -1),
            (a.started_at.timestamp(), 1),
        )
    )
    most = open_now = 0
    for _, step in edges:
        open_now += step
        most = max(most, open_now)
    return most
