"""Shared fixtures: one real Temporal dev server per session, a worker per test."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sysconfig
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from webhooks.config import Settings
from webhooks.core import search_attributes as sa
from webhooks.core.models import DeliveryRequest
from webhooks.publisher import WebhookPublisher, build_request
from webhooks.registry.errors import EndpointNotFoundError
from webhooks.registry.models import EndpointChanges, NewEndpoint
from webhooks.registry.service import EndpointRegistry, open_registry
from worker import running_worker

pytest_plugins = ["tests.postgres"]


def pytest_configure(config: pytest.Config) -> None:
    # pytest-xdist's workers start with COLUMNS=80, and a rich Console made at import keeps
    # the COLUMNS it saw then; without it, each CLI run follows its own (tests.integration.Cli).
    os.environ.pop("COLUMNS", None)


BIN = Path(sysconfig.get_path("scripts"))
CONSOLE_NAMESPACE = "console-tests"
SECRET = "whsec_" + base64.b64encode(b"streampay-test-secret-0123456789").decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"streampay-old-secret-9876543210").decode()
KEY_TEXT = "k1:" + base64.b64encode(b"registry-test-key-32-bytes-long!").decode()
"""The key ring sealing the tests' endpoint secrets."""
ACCOUNT = "acct_test"


class EndpointPublisher:
    """The publisher as the tests use it: `publish(endpoint_id=E, url=U, ...)` makes sure the
    registry holds endpoint E at URL U (signing with `secrets`, newest first) and then
    publishes to it the way StreamPay services do, by endpoint id alone."""

    def __init__(
        self, publisher: WebhookPublisher, registry: EndpointRegistry, cache_seconds: float
    ) -> None:
        self.publisher = publisher
        self.registry = registry
        self.cache_seconds = cache_seconds
        self._lock = asyncio.Lock()
        self._urls: dict[str, str] = {}
        """What this helper last set each endpoint to (skips the registry when unchanged)."""

    def on(self, client: Client, task_queue: str) -> EndpointPublisher:
        """The same registry, another client or task queue."""
        return EndpointPublisher(
            WebhookPublisher(client, registry=self.registry, task_queue=task_queue),
            self.registry,
            self.cache_seconds,
        )

    async def endpoint(self, endpoint_id: str, url: str, secrets: Sequence[str] = (SECRET,)) -> str:
        if self._urls.get(endpoint_id) == url:
            return endpoint_id
        async with self._lock:  # concurrent publishes to a new endpoint create it once
            await self._endpoint(endpoint_id, url, secrets)
            self._urls[endpoint_id] = url
            return endpoint_id

    async def _endpoint(self, endpoint_id: str, url: str, secrets: Sequence[str]) -> str:
        try:
            existing = await self.registry.get(endpoint_id)
        except EndpointNotFoundError:
            new = NewEndpoint(id=endpoint_id, account_id=ACCOUNT, url=url)
            await self.registry.create(new, secret=SecretStr(secrets[-1]))
            for newer in reversed(secrets[:-1]):
                await self.registry.rotate_secret(endpoint_id, secret=SecretStr(newer))
            return endpoint_id
        if existing.url != url:
            await self.registry.update(endpoint_id, EndpointChanges(url=url))
            # As a customer who moved the endpoint earlier: workers have seen the new URL.
            await asyncio.sleep(self.cache_seconds + 0.1)
        return endpoint_id

    async def publish(
        self,
        *,
        endpoint_id: str,
        url: str,
        secrets: Sequence[str] = (SECRET,),
        **event: Any,
    ) -> str:
        await self.endpoint(endpoint_id, url, secrets)
        return await self.publisher.publish(endpoint_id=endpoint_id, **event)

    async def request(self, *, endpoint_id: str, url: str, **event: Any) -> DeliveryRequest:
        """The delivery input `publish` would start, to start it some other way."""
        await self.endpoint(endpoint_id, url)
        return build_request(endpoint=await self.registry.get(endpoint_id), **event)

    async def start(self, request: DeliveryRequest) -> str:
        return await self.publisher.start(request)


@pytest.fixture(scope="session")
async def temporal() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN / "temporal"),
        search_attributes=sa.ALL,
        data_converter=pydantic_data_converter,
        dev_server_extra_args=[
            "--dynamic-config-value",
            "frontend.enableUpdateWorkflowExecution=true",
            # The console tests' own namespace (tests/console/conftest.py).
            "--namespace",
            CONSOLE_NAMESPACE,
        ],
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
def client(temporal: WorkflowEnvironment) -> Client:
    return temporal.client


async def add_search_attributes(client: Client) -> None:
    """Register the product's search attributes in the client's namespace (a namespace
    other than the dev server's default starts without them)."""
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=client.namespace,
            search_attributes={
                key.name: IndexedValueType.Value(
                    f"INDEXED_VALUE_TYPE_{key.indexed_value_type.name}"
                )
                for key in sa.ALL
            },
        )
    )


@pytest.fixture(scope="session")
async def skipping() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server, for long schedules and for many short timers (the dev
    server fires a timer no sooner than about a second)."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(BIN / "temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    # It knows no custom search attributes until they are added through the operator service.
    await add_search_attributes(env.client)
    yield env
    await env.shutdown()


@pytest.fixture
def secrets_file(tmp_path: Path) -> Path:
    """A secrets file of the old format (before the registry), for the import tests."""
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"default": SECRET, "rotating": [SECRET, OLD_SECRET]}))
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A fresh registry (SQLite in the test's folder) per test, so endpoint ids never clash."""
    return Settings(
        task_queue=f"webhooks-test-{uuid.uuid4().hex[:8]}",
        database_url=f"sqlite:///{tmp_path / 'registry.db'}",
        secret_keys=KEY_TEXT,
        registry_cache_seconds=0.2,  # registry changes reach the worker quickly in tests
        allow_private_destinations=True,
        http_timeout_seconds=2,
        connect_timeout_seconds=1,
        # Off by default so failure-heavy tests keep counting attempts; the circuit's own
        # tests turn it on with short cooldowns.
        circuit_enabled=False,
    )


@pytest.fixture
async def registry(settings: Settings) -> AsyncIterator[EndpointRegistry]:
    """The test's registry, migrated, with the key ring."""
    async with open_registry(settings, migrate=True) as registry:
        yield registry


@pytest.fixture
async def worker(
    client: Client, settings: Settings, registry: EndpointRegistry
) -> AsyncIterator[None]:
    async with running_worker(client, settings):
        yield


@pytest.fixture
def publisher(client: Client, settings: Settings, registry: EndpointRegistry) -> EndpointPublisher:
    return EndpointPublisher(
        WebhookPublisher(client, registry=registry, task_queue=settings.task_queue),
        registry,
        settings.registry_cache_seconds,
    )


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
