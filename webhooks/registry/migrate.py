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
from webhooks.registry.store import RegistryStore

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
    current = MigrationContext.configure(connection).get_current_revision()
    known = current is None or any(r.revision == current for r in script.walk_revisions())
    return SchemaStatus(current=current, head=_head(), known=known)


def _upgrade(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")


async def schema_status(engine: AsyncEngine) -> SchemaStatus:
    sqlite_file = _sqlite_file(engine)
    if sqlite_file is not None and not sqlite_file.exists():
        # Not created yet: empty, and opening it would create it (or fail on its folder).
        return SchemaStatus(current=None, head=_head(), known=True)
    async with RegistryStore(engine).begin() as conn:
        return await conn.run_sync(_status)


def _sqlite_file(engine: AsyncEngine) -> Path | None:
    database = engine.url.database
    if engine.url.get_backend_name() == "sqlite" and database and database != ":memory:":
        return Path(database)
    return None


def _head() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _refuse_newer(status: SchemaStatus) -> None:
    if not status.known:
        raise SchemaVersionError(
            f"the registry database is at revision {status.current!r}, newer than this "
            f"release knows (head {status.head!r}): run a release at least as new as the one "
            "that migrated it"
        )


async def upgrade(engine: AsyncEngine) -> SchemaStatus:
    """Apply every migration the database lacks; refuses a schema newer than this code.
    A SQLite file's folder is created if needed (the dev state folder)."""
    sqlite_file = _sqlite_file(engine)
    if sqlite_file is not None:
        sqlite_file.parent.mkdir(parents=True, exist_ok=True)
    status = await schema_status(engine)
    _refuse_newer(status)
    if not status.up_to_date:
        async with RegistryStore(engine).begin() as conn:
            await conn.run_sync(_upgrade)
    return await schema_status(engine)


async def require_current(engine: AsyncEngine) -> SchemaStatus:
    """Refuse a database that is not at this code's revision, saying what to run."""
    status = await schema_status(engine)
    _refuse_newer(status)
    if not status.up_to_date:
        raise SchemaVersionError(
            f"the registry database is at revision {status.current or 'none (empty)'}, "
            f"this release needs {status.head}: run `webhooks db upgrade`"
        )
    return status
