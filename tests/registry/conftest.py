"""Each registry test runs against a fresh SQLite file and a fresh PostgreSQL 15 database."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.postgres import PostgresCluster
from webhooks.core.destinations import DestinationPolicy
from webhooks.registry.crypto import SecretKeyRing
from webhooks.registry.migrate import upgrade
from webhooks.registry.service import EndpointRegistry
from webhooks.registry.store import RegistryStore, create_engine

KEY_TEXT = "k1:" + base64.b64encode(b"registry-test-key-32-bytes-long!").decode()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return cluster.new_database()


@pytest.fixture
async def registry(database_url: str) -> AsyncIterator[EndpointRegistry]:
    engine = create_engine(database_url)
    await upgrade(engine)
    yield EndpointRegistry(
        RegistryStore(engine),
        SecretKeyRing.from_text(KEY_TEXT),
        destinations=DestinationPolicy(allow_private=True),
    )
    await engine.dispose()
