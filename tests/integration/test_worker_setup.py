"""A worker on a namespace without our search attributes registers them before polling,
instead of failing (and re-sending) every workflow task."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from tests.conftest import BIN, EndpointPublisher
from webhooks.config import Settings
from webhooks.core import search_attributes as sa
from webhooks.core.models import DeliveryResult, DeliveryState
from webhooks.dev.receiver import Receiver
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
