"""What is on disk: migrations bring any database to the code's schema (and a newer schema
is refused), and no secret is ever stored in the clear."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.postgres import PostgresCluster
from webhooks.core.destinations import DestinationPolicy
from webhooks.core.signing import secret_key
from webhooks.registry.errors import RegistryUnavailableError, SchemaVersionError
from webhooks.registry.migrate import schema_status, upgrade
from webhooks.registry.models import NewEndpoint
from webhooks.registry.service import EndpointRegistry
from webhooks.registry.store import RegistryStore, create_engine

OPEN = DestinationPolicy(allow_private=True)


async def test_upgrade_from_empty_is_idempotent_and_a_newer_schema_is_refused(
    database_url: str,
) -> None:
    engine = create_engine(database_url)
    try:
        empty = await schema_status(engine)
        assert empty.current is None
        assert empty.known
        assert not empty.up_to_date
        done = await upgrade(engine)
        assert done.up_to_date
        assert (await upgrade(engine)).current == done.head
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        ahead = await schema_status(engine)
        assert not ahead.known
        with pytest.raises(SchemaVersionError, match="revision '9999', newer than this"):
            await upgrade(engine)
    finally:
        await engine.dispose()


def _forms(secret: str) -> list[bytes]:
    """Every way a secret could appear: its text, its raw key, the key's base64 and hex."""
    key = secret_key(secret)
    return [secret.encode(), key, base64.b64encode(key), key.hex().encode(), b"whsec_"]


async def _create_some(registry: EndpointRegistry) -> list[str]:
    created = [
        await registry.create(NewEndpoint(account_id="a", url="https://e.example.com/"))
        for _ in range(3)
    ]
    rotated = await registry.rotate_secret(created[0].endpoint.id)
    return [c.secret.get_secret_value() for c in [*created, rotated]]


def _read_all(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.iterdir())


async def test_the_sqlite_file_holds_no_secret_in_the_clear(tmp_path: Path) -> None:
    from tests.registry.conftest import KEY_TEXT
    from webhooks.registry.crypto import SecretKeyRing

    path = tmp_path / "registry.db"
    engine = create_engine(f"sqlite:///{path}")
    await upgrade(engine)
    registry = EndpointRegistry(
        RegistryStore(engine), SecretKeyRing.from_text(KEY_TEXT), destinations=OPEN
    )
    secrets = await _create_some(registry)
    await engine.dispose()
    raw = _read_all(tmp_path)  # the WAL files too
    assert b"endpoint_secrets" in raw
    for secret in secrets:
        for form in _forms(secret):
            assert form not in raw


async def test_a_postgresql_dump_holds_no_secret_in_the_clear(
    postgres: PostgresCluster,
) -> None:
    from tests.registry.conftest import KEY_TEXT
    from webhooks.registry.crypto import SecretKeyRing

    url = postgres.new_database()
    engine = create_engine(url)
    await upgrade(engine)
    registry = EndpointRegistry(
        RegistryStore(engine), SecretKeyRing.from_text(KEY_TEXT), destinations=OPEN
    )
    secrets = await _create_some(registry)
    await engine.dispose()
    dump = postgres.dump(url).encode()
    assert b"COPY public.endpoint_secrets" in dump
    for secret in secrets:
        for form in _forms(secret):
            assert form not in dump


async def test_an_unreachable_database_is_registry_unavailable(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'missing' / 'registry.db'}")
    registry = EndpointRegistry(RegistryStore(engine), None)
    with pytest.raises(RegistryUnavailableError, match="unreachable"):
        await registry.get("ep_1")
    await engine.dispose()
    pg = create_engine("postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(RegistryUnavailableError, match="unreachable"):
        await EndpointRegistry(RegistryStore(pg), None).resolve("ep_1")
    await pg.dispose()
