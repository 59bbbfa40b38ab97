"""The registry's tables (SQLAlchemy Core). Changing them means a new Alembic revision in
`migrations/versions/`; `tests/unit/test_registry_migrations.py` checks that the migrated
schema and this metadata agree."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out (SQLite stores no zone; PostgreSQL timestamptz)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime stored in the registry")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

endpoints = Table(
    "endpoints",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("account_id", String(200), nullable=False, index=True),
    Column("url", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("disabled_reason", Text),
    Column("disabled_by", String(200)),
    Column("disabled_at", UtcDateTime),
    Column("event_types", JSON),
    Column("settings", JSON, nullable=False),
    Column("legacy_ref", String(200), unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("version", Integer, nullable=False),
)

endpoint_secrets = Table(
    "endpoint_secrets",
    metadata,
    Column("id", String(64), primary_key=True),
    Column(
        "endpoint_id",
        String(64),
        ForeignKey("endpoints.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("key_id", String(64), nullable=False),
    Column("ciphertext", LargeBinary, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False, index=True),
    Column("actor", String(200), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(200), nullable=False, index=True),
    Column("before", JSON),
    Column("after", JSON),
)
"""Who changed what and when: the registry writes a row per change, in the same
transaction; the console records its own actions with `EndpointRegistry.record_audit`."""

circuit_states = Table(
    "circuit_states",
    metadata,
    # No foreign key: deliveries started before the registry name endpoints it never held.
    Column("endpoint_id", String(200), primary_key=True),
    Column("phase", String(16), nullable=False),
    Column("next_probe_at", UtcDateTime),
    Column("probe_lease_until", UtcDateTime),
    Column("reason", Text),
    Column("trips", Integer, nullable=False),
    Column("opened_at", UtcDateTime),
    Column("changed_at", UtcDateTime, nullable=False),
)
"""Each endpoint circuit's verdict, written by its `EndpointCircuit` workflow (newest
`changed_at` wins) and read by every worker's gate; `probe_lease_until` is the one probe
of a due circuit, taken by one worker with a conditional UPDATE."""
