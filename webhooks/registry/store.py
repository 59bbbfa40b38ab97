"""The registry's queries, on SQLAlchemy 2's async engine (aiosqlite or asyncpg).

Rows in, rows out: validation, ids, crypto and auditing live in `service`. Every write
that changes an endpoint checks and bumps its `version` in the same UPDATE, so two
concurrent edits cannot both win (optimistic concurrency without locks).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Row, case, delete, event, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from webhooks.registry.errors import RegistryUnavailableError
from webhooks.registry.schema import audit_log, circuit_states, endpoint_secrets, endpoints

DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}


def async_url(url: str) -> URL:
    """`postgresql://` and `sqlite:///` get their async drivers; other schemes are refused."""
    try:
        parsed = make_url(url)
    except Exception:
        raise ValueError("WEBHOOKS_DATABASE_URL is not a database URL") from None
    backend = parsed.get_backend_name()
    if backend not in DRIVERS:
        raise ValueError(
            f"WEBHOOKS_DATABASE_URL: unsupported database {backend!r} (use postgresql or sqlite)"
        )
    return parsed.set(drivername=DRIVERS[backend])


def create_engine(url: str) -> AsyncEngine:
    """An engine that notices a restarted database (pre-ping) and does not wait long for
    one that is down, so the worker's cache can answer instead."""
    parsed = async_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_async_engine(parsed, connect_args={"timeout": 5})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        parsed,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5,
        pool_timeout=5,
        connect_args={"timeout": 5, "command_timeout": 10},
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL: the worker reads while the CLI writes; foreign keys: secrets go with endpoints.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _unreachable(err: BaseException) -> str:
    return f"the registry database is unreachable ({type(err).__name__}: {str(err)[:160]})"


class RegistryStore:
    """Queries over one engine. Methods that take `conn` run inside the caller's transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A transaction; database outages become RegistryUnavailableError."""
        try:
            async with self.engine.begin() as conn:
                yield conn
        except DBAPIError as err:
            if not (
                err.connection_invalidated or isinstance(err, OperationalError | InterfaceError)
            ):
                raise
            raise RegistryUnavailableError(_unreachable(err.orig or err)) from err
        except (OSError, TimeoutError) as err:
            raise RegistryUnavailableError(_unreachable(err)) from err

    async def insert_endpoint(self, conn: AsyncConnection, row: dict[str, Any]) -> None:
        await conn.execute(insert(endpoints).values(**row))

    async def endpoint(
        self, conn: AsyncConnection, endpoint_id: str, *, for_update: bool = False
    ) -> Row[Any] | None:
        query = select(endpoints).where(endpoints.c.id == endpoint_id)
        if for_update:
            query = query.with_for_update()
        return (await conn.execute(query)).first()

    async def endpoint_by_legacy_ref(self, conn: AsyncConnection, ref: str) -> Row[Any] | None:
        query = select(endpoints).where(endpoints.c.legacy_ref == ref)
        return (await conn.execute(query)).first()

    async def endpoints(
        self,
        conn: AsyncConnection,
        *,
        account_id: str | None = None,
        state: str | None = None,
        limit: int | None = None,
        after_id: str | None = None,
    ) -> Sequence[Row[Any]]:
        query = select(endpoints).order_by(endpoints.c.id)
        if account_id is not None:
            query = query.where(endpoints.c.account_id == account_id)
        if state is not None:
            query = query.where(endpoints.c.state == state)
        if after_id is not None:
            query = query.where(endpoints.c.id > after_id)
        if limit is not None:
            query = query.limit(limit)
        return (await conn.execute(query)).all()

    async def update_endpoint(
        self, conn: AsyncConnection, endpoint_id: str, version: int, values: dict[str, Any]
    ) -> bool:
        """Apply `values` and bump the version if the row is still at `version`."""
        result = await conn.execute(
            update(endpoints)
            .where(endpoints.c.id == endpoint_id, endpoints.c.version == version)
            .values(**values, version=version + 1)
        )
        return result.rowcount == 1

    async def delete_endpoint(self, conn: AsyncConnection, endpoint_id: str) -> None:
        await conn.execute(
            delete(endpoint_secrets).where(endpoint_secrets.c.endpoint_id == endpoint_id)
        )
        await conn.execute(delete(endpoints).where(endpoints.c.id == endpoint_id))

    async def insert_secret(self, conn: AsyncConnection, row: dict[str, Any]) -> None:
        await conn.execute(insert(endpoint_secrets).values(**row))

    async def secrets(
        self, conn: AsyncConnection, endpoint_ids: Sequence[str]
    ) -> Sequence[Row[Any]]:
        """The secrets of these endpoints, newest first."""
        query = (
            select(endpoint_secrets)
            .where(endpoint_secrets.c.endpoint_id.in_(endpoint_ids))
            .order_by(endpoint_secrets.c.created_at.desc(), endpoint_secrets.c.id.desc())
        )
        return (await conn.execute(query)).all()

    async def all_secrets(self, conn: AsyncConnection) -> Sequence[Row[Any]]:
        return (await conn.execute(select(endpoint_secrets))).all()

    async def update_secret(
        self, conn: AsyncConnection, secret_id: str, values: dict[str, Any]
    ) -> None:
        await conn.execute(
            update(endpoint_secrets).where(endpoint_secrets.c.id == secret_id).values(**values)
        )

    async def delete_expired_secrets(
        self, conn: AsyncConnection, endpoint_id: str, now: datetime
    ) -> None:
        await conn.execute(
            delete(endpoint_secrets).where(
                endpoint_secrets.c.endpoint_id == endpoint_id,
                endpoint_secrets.c.expires_at.is_not(None),
                endpoint_secrets.c.expires_at <= now,
            )
        )

    async def insert_audit(self, conn: AsyncConnection, row: dict[str, Any]) -> None:
        await conn.execute(insert(audit_log).values(**row))

    async def audit(
        self, conn: AsyncConnection, *, target: str | None = None, limit: int = 100
    ) -> Sequence[Row[Any]]:
        query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        if target is not None:
            query = query.where(audit_log.c.target == target)
        return (await conn.execute(query)).all()

    async def circuit_state(self, conn: AsyncConnection, endpoint_id: str) -> Row[Any] | None:
        query = select(circuit_states).where(circuit_states.c.endpoint_id == endpoint_id)
        return (await conn.execute(query)).first()

    async def put_circuit_state(self, conn: AsyncConnection, row: dict[str, Any]) -> bool:
        """Insert or replace a circuit's verdict unless a newer one is stored. A new phase
        other than half-open ends any probe lease; half-open keeps the one taken."""
        dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
        statement = dialect.insert(circuit_states).values(**row, probe_lease_until=None)
        new = statement.excluded
        lease = circuit_states.c.probe_lease_until
        keep_lease = new.phase == "half_open"
        values = {
            column: getattr(new, column)
            for column in ("phase", "next_probe_at", "reason", "trips", "opened_at", "changed_at")
        }
        values["probe_lease_until"] = case((keep_lease, lease), else_=None)
        result = await conn.execute(
            statement.on_conflict_do_update(
                index_elements=[circuit_states.c.endpoint_id],
                set_=values,
                where=circuit_states.c.changed_at < new.changed_at,
            )
        )
        return bool(result.rowcount)

    async def take_probe_lease(
        self, conn: AsyncConnection, endpoint_id: str, now: datetime, until: datetime
    ) -> bool:
        """Give this caller the probe of a due circuit if nobody holds it: one winner."""
        c = circuit_states.c
        result = await conn.execute(
            update(circuit_states)
            .where(
                c.endpoint_id == endpoint_id,
                c.phase.in_(("open", "half_open")),
                or_(c.next_probe_at.is_(None), c.next_probe_at <= now),
                or_(c.probe_lease_until.is_(None), c.probe_lease_until <= now),
            )
            .values(probe_lease_until=until)
        )
        return result.rowcount == 1
