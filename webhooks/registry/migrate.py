"""Schema migrations with Alembic, run from code (`webhooks db upgrade`, and the worker and
`webhooks dev` at start).

`ensure_schema` upgrades an empty or older database and refuses a newer one: a worker of
an older release must not run against a schema it does not know.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from webhooks.registry.errors import SchemaVersionError

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@dataclass(frozen=True)
class SchemaStatus:
    current: str | None
    """The database's revision (None: empty)."""
    head: str
    """The newest revision this code knows."""
    known: bool
    """Whether this code knows the database's revision (False: a newer release migrated it)."""

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def _status(connection: Connection) -> SchemaStatus:
    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    assert head is not None
    current = MigrationContext.configure(connection).get_current_revision()
    known = current is None or any(r.revision == current for r in script.walk_revisions())
    return SchemaStatus(current=current, head=head, known=known)


def _upgrade(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")


async def schema_status(engine: AsyncEngine) -> SchemaStatus:
    async with engine.connect() as conn:
        return await conn.run_sync(_status)


async def upgrade(engine: AsyncEngine) -> SchemaStatus:
    """Apply every migration the database lacks; refuses a schema newer than this code."""
    status = await schema_status(engine)
    if not status.known:
        raise SchemaVersionError(
            f"the registry database is at revision {status.current!r}, newer than this "
            f"release knows (head {status.head!r}): run a release at least as new as the one "
            "that migrated it"
        )
    if not status.up_to_date:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade)
    return await schema_status(engine)
