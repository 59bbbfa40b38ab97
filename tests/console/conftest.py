"""One console (in this process, on a real socket) and one worker for the whole session,
on the session's dev server, in a namespace of their own: the console lists every delivery
of its namespace, and the other tests' deliveries outlive their workers, so a console test
would find deliveries nobody can query."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from tests.conftest import CONSOLE_NAMESPACE, EndpointPublisher, add_search_attributes
from tests.console import PASSWORDS, running_console
from webhooks.config import Settings
from webhooks.core.roles import Role
from webhooks.publisher import WebhookPublisher
from webhooks.registry.service import EndpointRegistry, open_registry
from webhooks.server.auth import hash_password, new_token
from webhooks.server.settings import ConsoleSettings, TokenConfig, UserConfig
from worker import running_worker

CODEC_KEY = base64.b64encode(bytes(range(32))).decode()
UI_ORIGIN = "http://localhost:8233"
TOKENS = {role: new_token() for role in Role}
"""role -> (token, hash): one API token per role."""


@pytest.fixture(scope="session")
async def client(temporal: WorkflowEnvironment) -> Client:
    client = await Client.connect(
        temporal.client.service_client.config.target_host,
        namespace=CONSOLE_NAMESPACE,
        data_converter=pydantic_data_converter,
    )
    await add_search_attributes(client)
    return client


@pytest.fixture(scope="session")
def console_settings() -> ConsoleSettings:
    return ConsoleSettings(
        users=[
            UserConfig(name=name, password_hash=hash_password(password), role=role)
            for name, (password, role) in PASSWORDS.items()
        ],
        tokens=[
            TokenConfig(name=f"{role.value}-token", token_hash=digest, role=role)
            for role, (_, digest) in TOKENS.items()
        ],
        session_secret="console-test-session-secret",
        codec_origins=(UI_ORIGIN,),
    )


@pytest.fixture(scope="session")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The worker's and the console's settings (the console holds the codec keys)."""
    state = tmp_path_factory.mktemp("console")
    return Settings(
        temporal_namespace=CONSOLE_NAMESPACE,
        task_queue=f"webhooks-console-{uuid.uuid4().hex[:8]}",
        state_dir=state,
        database_url=f"sqlite:///{state / 'registry.db'}",
        secret_keys=f"k1:{CODEC_KEY}",
        registry_cache_seconds=0.2,
        allow_private_destinations=True,
        http_timeout_seconds=2,
        connect_timeout_seconds=1,
        circuit_enabled=False,
        codec_keys=f"k1:{CODEC_KEY}",
    )


@pytest.fixture(scope="session")
async def backend_registry(backend: Settings) -> AsyncIterator[EndpointRegistry]:
    async with open_registry(backend, migrate=True) as registry:
        yield registry


@pytest.fixture(scope="session")
async def backend_worker(
    client: Client, backend: Settings, backend_registry: EndpointRegistry
) -> AsyncIterator[None]:
    async with running_worker(client, backend):
        yield


@pytest.fixture(scope="session")
def backend_publisher(
    client: Client, backend: Settings, backend_registry: EndpointRegistry
) -> EndpointPublisher:
    return EndpointPublisher(
        WebhookPublisher(client, registry=backend_registry, task_queue=backend.task_queue),
        backend_registry,
        backend.registry_cache_seconds,
    )


@pytest.fixture(scope="session")
async def console_url(
    client: Client, backend: Settings, console_settings: ConsoleSettings, backend_worker: None
) -> AsyncIterator[str]:
    async with running_console(backend, console_settings, client) as url:
        yield url


@pytest.fixture
async def http(console_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=console_url, trust_env=False, timeout=30) as client:
        yield client


def bearer(role: Role) -> dict[str, str]:
    return {"authorization": f"Bearer {TOKENS[role][0]}"}
