"""One console (in this process, on a real socket) and one worker for the whole session,
on the session's dev server."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from tests.console import PASSWORDS, running_console
from webhooks.config import Settings
from webhooks.core.roles import Role
from webhooks.publisher import WebhookPublisher
from webhooks.server.auth import hash_password, new_token
from webhooks.server.settings import ConsoleSettings, TokenConfig, UserConfig
from worker import running_worker

CODEC_KEY = base64.b64encode(bytes(range(32))).decode()
UI_ORIGIN = "http://localhost:8233"
TOKENS = {role: new_token() for role in Role}
"""role -> (token, hash): one API token per role."""


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
def backend(secrets_file: Path) -> Settings:
    """The worker's and the console's settings (the console holds the codec keys)."""
    (secrets_file.parent / "console").mkdir(exist_ok=True)
    return Settings(
        task_queue=f"webhooks-console-{uuid.uuid4().hex[:8]}",
        secrets_file=secrets_file,
        state_dir=secrets_file.parent / "console",
        secret_keys=f"k1:{CODEC_KEY}",
        allow_private_destinations=True,
        http_timeout_seconds=2,
        connect_timeout_seconds=1,
        circuit_enabled=False,
        codec_keys=f"k1:{CODEC_KEY}",
    )


@pytest.fixture(scope="session")
async def backend_worker(client: Client, backend: Settings) -> AsyncIterator[None]:
    async with running_worker(client, backend):
        yield


@pytest.fixture(scope="session")
def backend_publisher(client: Client, backend: Settings) -> WebhookPublisher:
    return WebhookPublisher(client, task_queue=backend.task_queue, secrets=backend.secret_store())


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
