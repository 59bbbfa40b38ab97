"""Shared fixtures: one real Temporal dev server per session, a worker per test."""

from __future__ import annotations

import base64
import json
import os
import sysconfig
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from webhooks.config import Settings
from webhooks.core import search_attributes as sa
from webhooks.publisher import WebhookPublisher
from worker import running_worker

pytest_plugins = ["tests.postgres"]

BIN = Path(sysconfig.get_path("scripts"))
SECRET = "whsec_" + base64.b64encode(b"streampay-test-secret-0123456789").decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"streampay-old-secret-9876543210").decode()


@pytest.fixture(scope="session")
async def temporal() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN / "temporal"),
        search_attributes=sa.ALL,
        data_converter=pydantic_data_converter,
        dev_server_extra_args=[
            "--dynamic-config-value",
            "frontend.enableUpdateWorkflowExecution=true",
        ],
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
def client(temporal: WorkflowEnvironment) -> Client:
    return temporal.client


@pytest.fixture(scope="session")
def secrets_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("secrets") / "secrets.json"
    path.write_text(json.dumps({"default": SECRET, "rotating": [SECRET, OLD_SECRET]}))
    return path


@pytest.fixture
def settings(secrets_file: Path) -> Settings:
    return Settings(
        task_queue=f"webhooks-test-{uuid.uuid4().hex[:8]}",
        secrets_file=secrets_file,
        allow_private_destinations=True,
        http_timeout_seconds=2,
        connect_timeout_seconds=1,
        # Off by default so failure-heavy tests keep counting attempts; the circuit's own
        # tests turn it on with short cooldowns.
        circuit_enabled=False,
    )


@pytest.fixture
async def worker(client: Client, settings: Settings) -> AsyncIterator[None]:
    async with running_worker(client, settings):
        yield


@pytest.fixture
def publisher(client: Client, settings: Settings) -> WebhookPublisher:
    return WebhookPublisher(client, task_queue=settings.task_queue, secrets=settings.secret_store())


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
