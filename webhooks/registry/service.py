"""`EndpointRegistry`: the one API over the registry, for the CLI, the console and HTTP API,
the publisher (which endpoints exist and want an event) and the worker (what to send with).

Every change runs in one transaction with its audit row, checks the endpoint's version
(optimistic concurrency: a stale `expected_version` is a `VersionConflictError`, never a
lost write) and bumps it. Secret values leave only through `CreatedEndpoint` (create and
rotate: shown once) and `ResolvedEndpoint` (the worker's signing keys, in memory).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import SecretStr
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from webhooks.config import Settings
from webhooks.core.circuit import PublishedCircuit
from webhooks.core.destinations import DestinationPolicy
from webhooks.core.signing import SECRET_PREFIX, secret_key
from webhooks.registry.crypto import SecretKeyRing
from webhooks.registry.errors import (
    EndpointNotFoundError,
    EndpointUnavailableError,
    RegistryError,
    SecretKeysError,
    VersionConflictError,
)
from webhooks.registry.migrate import require_current, upgrade
from webhooks.registry.models import (
    DEFAULT_OVERLAP_SECONDS,
    AuditEntry,
    CreatedEndpoint,
    Endpoint,
    EndpointChanges,
    EndpointSettings,
    EndpointState,
    NewEndpoint,
    ResolvedEndpoint,
    SecretInfo,
    generate_secret,
    new_endpoint_id,
    new_secret_id,
)
from webhooks.registry.store import RegistryStore, create_engine
from webhooks.registry.urls import Resolver, resolve_host, vet_url

Clock = Callable[[], datetime]
IMPORTED_REASON = "imported: set its URL with `webhooks endpoint update`, then enable it"


@dataclass(frozen=True)
class ImportedRef:
    """One `secret_ref` of an imported secrets file, and the endpoint that now holds it."""

    ref: str
    endpoint_id: str
    created: bool
    """False when the ref had been imported before (importing is idempotent)."""


class EndpointRegistry:
    """Endpoints, their secrets and the audit log, over a `RegistryStore`."""

    def __init__(
        self,
        store: RegistryStore,
        keys: SecretKeyRing | None,
        *,
        destinations: DestinationPolicy | None = None,
        clock: Clock | None = None,
        resolver: Resolver = resolve_host,
    ) -> None:
        self.store = store
        self._keys = keys
        self._destinations = destinations or DestinationPolicy()
        self._clock = clock or (lambda: datetime.now(UTC))
        self._resolver = resolver

    # -- reading -------------------------------------------------------------------------

    async def get(self, endpoint_id: str) -> Endpoint:
        async with self.store.begin() as conn:
            return await self._get(conn, endpoint_id)

    async def list_endpoints(
        self,
        *,
        account_id: str | None = None,
        state: EndpointState | None = None,
        limit: int | None = None,
        after_id: str | None = None,
    ) -> list[Endpoint]:
        """Endpoints ordered by id; page with `limit` and the last id seen as `after_id`."""
        async with self.store.begin() as conn:
            rows = await self.store.endpoints(
                conn,
                account_id=account_id,
                state=state.value if state else None,
                limit=limit,
                after_id=after_id,
            )
            return await self._with_secrets(conn, rows)

    async def subscribers(self, account_id: str, event_type: str) -> list[Endpoint]:
        """The account's enabled endpoints whose filter takes `event_type` (for publishing:
        one query, so their `secrets` are not listed)."""
        async with self.store.begin() as conn:
            rows = await self.store.endpoints(
                conn, account_id=account_id, state=EndpointState.ENABLED.value
            )
        endpoints = [_endpoint(row, []) for row in rows]
        return [e for e in endpoints if e.wants(event_type)]

    async def deliverable(self, endpoint_id: str, *, account_id: str | None = None) -> Endpoint:
        """The endpoint, if a new event may be published to it; else a clear error (for
        publishing: one query, so its `secrets` are not listed)."""
        async with self.store.begin() as conn:
            row = await self.store.endpoint(conn, endpoint_id)
        if row is None:
            raise EndpointNotFoundError(endpoint_id)
        endpoint = _endpoint(row, [])
        if account_id is not None and endpoint.account_id != account_id:
            raise EndpointUnavailableError(
                f"endpoint {endpoint_id!r} does not belong to account {account_id!r}"
            )
        if endpoint.state is not EndpointState.ENABLED:
            raise EndpointUnavailableError(
                f"endpoint {endpoint_id!r} is disabled ({endpoint.disabled_reason or 'no reason'})"
            )
        return endpoint

    async def resolve(self, endpoint_id: str) -> ResolvedEndpoint | None:
        """What the worker sends with: URL, signing keys, settings, state. None: deleted."""
        async with self.store.begin() as conn:
            row = await self.store.endpoint(conn, endpoint_id)
            return None if row is None else await self._resolved(conn, row)

    async def resolve_legacy(self, ref: str) -> ResolvedEndpoint | None:
        """The endpoint imported for an old `secret_ref` (deliveries started before the
        registry name their secret that way). None: never imported."""
        async with self.store.begin() as conn:
            row = await self.store.endpoint_by_legacy_ref(conn, ref)
            return None if row is None else await self._resolved(conn, row)

    async def circuit(self, endpoint_id: str) -> PublishedCircuit | None:
        """The endpoint circuit's published verdict; None: it never tripped."""
        async with self.store.begin() as conn:
            row = await self.store.circuit_state(conn, endpoint_id)
        if row is None:
            return None
        return PublishedCircuit.model_validate(row._asdict())

    async def publish_circuit(self, verdict: PublishedCircuit) -> bool:
        """Store the circuit's verdict; False if a newer one is stored already."""
        async with self.store.begin() as conn:
            return await self.store.put_circuit_state(conn, verdict.model_dump(mode="python"))

    async def take_probe(self, endpoint_id: str, lease_seconds: float) -> bool:
        """The probe of a due circuit for the caller, if no other worker holds it."""
        now = self._clock()
        async with self.store.begin() as conn:
            return await self.store.take_probe_lease(
                conn, endpoint_id, now, now + timedelta(seconds=lease_seconds)
            )

    async def audit(self, *, target: str | None = None, limit: int = 100) -> list[AuditEntry]:
        """The newest audit rows first, optionally for one target (an endpoint id)."""
        async with self.store.begin() as conn:
            rows = await self.store.audit(conn, target=target, limit=limit)
        return [AuditEntry.model_validate(row._asdict()) for row in rows]

    # -- changing ------------------------------------------------------------------------

    async def create(
        self, new: NewEndpoint, *, secret: SecretStr | None = None, actor: str = "unknown"
    ) -> CreatedEndpoint:
        """A new enabled endpoint with a fresh secret (returned once, here), or with
        `secret` when one is brought along (say, from another webhook provider)."""
        await vet_url(new.url, self._destinations, self._resolver)
        key = secret_key(secret.get_secret_value() if secret else generate_secret())
        async with self.store.begin() as conn:
            if new.id is not None and await self.store.endpoint(conn, new.id) is not None:
                raise RegistryError(f"an endpoint with id {new.id!r} exists already")
            endpoint = await self._insert(conn, new, key, actor=actor)
        return CreatedEndpoint(endpoint=endpoint, secret=_secret_text(key))

    async def update(
        self,
        endpoint_id: str,
        changes: EndpointChanges,
        *,
        expected_version: int | None = None,
        actor: str = "unknown",
    ) -> Endpoint:
        """Change URL, filter, description or settings (only the fields set in `changes`)."""
        given = changes.model_fields_set
        if changes.url is not None:
            await vet_url(changes.url, self._destinations, self._resolver)
        values: dict[str, Any] = {}
        if "url" in given and changes.url is not None:
            values["url"] = changes.url
        if "description" in given and changes.description is not None:
            values["description"] = changes.description
        if "event_types" in given:
            values["event_types"] = changes.event_types
        if "settings" in given and changes.settings is not None:
            values["settings"] = changes.settings.model_dump(mode="json", exclude_defaults=True)
        return await self._change(endpoint_id, "update", values, expected_version, actor)

    async def disable(
        self,
        endpoint_id: str,
        *,
        reason: str = "disabled by an operator",
        expected_version: int | None = None,
        actor: str = "unknown",
    ) -> Endpoint:
        """Stop deliveries: waiting ones dead-letter as `endpoint_disabled` at their next
        attempt, and publishing to it is refused."""
        values = {
            "state": EndpointState.DISABLED.value,
            "disabled_reason": reason[:500],
            "disabled_by": actor,
            "disabled_at": self._clock(),
        }
        return await self._change(endpoint_id, "disable", values, expected_version, actor)

    async def enable(
        self, endpoint_id: str, *, expected_version: int | None = None, actor: str = "unknown"
    ) -> Endpoint:
        values = {
            "state": EndpointState.ENABLED.value,
            "disabled_reason": None,
            "disabled_by": None,
            "disabled_at": None,
        }
        return await self._change(endpoint_id, "enable", values, expected_version, actor)

    async def delete(
        self, endpoint_id: str, *, expected_version: int | None = None, actor: str = "unknown"
    ) -> Endpoint:
        """Remove the endpoint and its secrets; its waiting deliveries dead-letter as
        `endpoint_deleted`. Returns what was deleted."""
        async with self.store.begin() as conn:
            before = await self._get(conn, endpoint_id, for_update=True)
            _check_version(before, expected_version)
            await self.store.delete_endpoint(conn, endpoint_id)
            await self._audit(conn, actor, "delete", endpoint_id, before, None)
        return before

    async def rotate_secret(
        self,
        endpoint_id: str,
        *,
        overlap_seconds: float = DEFAULT_OVERLAP_SECONDS,
        secret: SecretStr | None = None,
        expected_version: int | None = None,
        actor: str = "unknown",
    ) -> CreatedEndpoint:
        """Add a new secret (generated, or `secret`); the current ones keep signing for
        `overlap_seconds` (both `v1,` signatures are sent meanwhile), then stop. Returns
        the new secret once."""
        if overlap_seconds < 0:
            raise ValueError("the overlap must not be negative")
        now = self._clock()
        ends = now + timedelta(seconds=overlap_seconds)
        key = secret_key(secret.get_secret_value() if secret else generate_secret())
        async with self.store.begin() as conn:
            before = await self._get(conn, endpoint_id, for_update=True)
            _check_version(before, expected_version)
            await self.store.delete_expired_secrets(conn, endpoint_id, now)
            for info in before.secrets:
                if info.expires_at is None or info.expires_at > ends:
                    await self.store.update_secret(conn, info.id, {"expires_at": ends})
            await self._add_secret(conn, endpoint_id, key, now)
            if not await self.store.update_endpoint(
                conn, endpoint_id, before.version, {"updated_at": now}
            ):
                raise VersionConflictError(endpoint_id, before.version, before.version + 1)
            after = await self._get(conn, endpoint_id)
            await self._audit(conn, actor, "rotate_secret", endpoint_id, before, after)
        return CreatedEndpoint(endpoint=after, secret=_secret_text(key))

    async def import_legacy(
        self,
        entries: Mapping[str, Sequence[tuple[bytes, datetime | None]]],
        *,
        account_id: str,
        actor: str = "unknown",
    ) -> list[ImportedRef]:
        """Bring the secrets of a `WEBHOOKS_SECRETS_FILE` in: one endpoint per ref, holding
        its secrets (with their expiries), so deliveries started before the registry keep
        signing. The endpoints start disabled (they have no URL of their own yet) and
        importing the same ref again changes nothing."""
        imported: list[ImportedRef] = []
        async with self.store.begin() as conn:
            for ref, keys in entries.items():
                existing = await self.store.endpoint_by_legacy_ref(conn, ref)
                if existing is not None:
                    imported.append(ImportedRef(ref, existing.id, created=False))
                    continue
                new = NewEndpoint(
                    account_id=account_id,
                    url="https://imported.invalid/",
                    description=f"imported from secret_ref {ref!r}",
                )
                endpoint = await self._insert(conn, new, None, actor=actor, legacy_ref=ref)
                now = self._clock()
                for key, expires_at in reversed(keys):  # newest (first) gets the latest time
                    await self._add_secret(conn, endpoint.id, key, now, expires_at)
                    now += timedelta(microseconds=1)
                await self.store.update_endpoint(
                    conn,
                    endpoint.id,
                    endpoint.version,
                    {
                        "state": EndpointState.DISABLED.value,
                        "disabled_reason": IMPORTED_REASON,
                        "disabled_by": actor,
                        "disabled_at": self._clock(),
                    },
                )
                imported.append(ImportedRef(ref, endpoint.id, created=True))
        return imported

    async def reseal(self, *, actor: str = "unknown") -> int:
        """Re-encrypt every secret under the newest key (after adding one to the ring), so
        older keys can be dropped. Returns how many secrets were rewritten."""
        ring = self._ring()
        count = 0
        async with self.store.begin() as conn:
            for row in await self.store.all_secrets(conn):
                if row.key_id == ring.key_id:
                    continue
                context = _context(row.endpoint_id, row.id)
                key_id, blob = ring.seal(ring.open(row.key_id, row.ciphertext, context), context)
                await self.store.update_secret(conn, row.id, {"key_id": key_id, "ciphertext": blob})
                count += 1
            await self._audit_raw(conn, actor, "reseal", "secrets", None, {"resealed": count})
        return count

    async def record_audit(
        self,
        *,
        actor: str,
        action: str,
        target: str,
        before: Mapping[str, Any] | None = None,
        after: Mapping[str, Any] | None = None,
    ) -> None:
        """Write an audit row for an action taken elsewhere (the console's, say). Values
        must be JSON-ready and must not hold secrets."""
        async with self.store.begin() as conn:
            await self._audit_raw(
                conn, actor, action, target, dict(before or {}) or None, dict(after or {}) or None
            )

    # -- internals -----------------------------------------------------------------------

    async def _insert(
        self,
        conn: AsyncConnection,
        new: NewEndpoint,
        key: bytes | None,
        *,
        actor: str,
        legacy_ref: str | None = None,
    ) -> Endpoint:
        now = self._clock()
        endpoint_id = new.id or new_endpoint_id()
        await self.store.insert_endpoint(
            conn,
            {
                "id": endpoint_id,
                "account_id": new.account_id,
                "url": new.url,
                "description": new.description,
                "state": EndpointState.ENABLED.value,
                "event_types": new.event_types,
                "settings": new.settings.model_dump(mode="json", exclude_defaults=True),
                "legacy_ref": legacy_ref,
                "created_at": now,
                "updated_at": now,
                "version": 1,
            },
        )
        if key is not None:
            await self._add_secret(conn, endpoint_id, key, now)
        endpoint = await self._get(conn, endpoint_id)
        await self._audit(conn, actor, "create", endpoint_id, None, endpoint)
        return endpoint

    async def _add_secret(
        self,
        conn: AsyncConnection,
        endpoint_id: str,
        key: bytes,
        created_at: datetime,
        expires_at: datetime | None = None,
    ) -> None:
        secret_id = new_secret_id()
        key_id, blob = self._ring().seal(key, _context(endpoint_id, secret_id))
        await self.store.insert_secret(
            conn,
            {
                "id": secret_id,
                "endpoint_id": endpoint_id,
                "key_id": key_id,
                "ciphertext": blob,
                "created_at": created_at,
                "expires_at": expires_at,
            },
        )

    async def _change(
        self,
        endpoint_id: str,
        action: str,
        values: dict[str, Any],
        expected_version: int | None,
        actor: str,
    ) -> Endpoint:
        async with self.store.begin() as conn:
            before = await self._get(conn, endpoint_id, for_update=True)
            _check_version(before, expected_version)
            values = {**values, "updated_at": self._clock()}
            if not await self.store.update_endpoint(conn, endpoint_id, before.version, values):
                current = await self._get(conn, endpoint_id)
                raise VersionConflictError(endpoint_id, before.version, current.version)
            after = await self._get(conn, endpoint_id)
            await self._audit(conn, actor, action, endpoint_id, before, after)
        return after

    async def _get(
        self, conn: AsyncConnection, endpoint_id: str, *, for_update: bool = False
    ) -> Endpoint:
        row = await self.store.endpoint(conn, endpoint_id, for_update=for_update)
        if row is None:
            raise EndpointNotFoundError(endpoint_id)
        return (await self._with_secrets(conn, [row]))[0]

    async def _with_secrets(
        self, conn: AsyncConnection, rows: Sequence[Row[Any]]
    ) -> list[Endpoint]:
        secrets: dict[str, list[SecretInfo]] = {row.id: [] for row in rows}
        if rows:
            for s in await self.store.secrets(conn, list(secrets)):
                secrets[s.endpoint_id].append(
                    SecretInfo(id=s.id, created_at=s.created_at, expires_at=s.expires_at)
                )
        return [_endpoint(row, secrets[row.id]) for row in rows]

    async def _resolved(self, conn: AsyncConnection, row: Row[Any]) -> ResolvedEndpoint:
        ring, now = self._ring(), self._clock()
        keys = tuple(
            ring.open(s.key_id, s.ciphertext, _context(row.id, s.id))
            for s in await self.store.secrets(conn, [row.id])
            if s.expires_at is None or now < s.expires_at
        )
        return ResolvedEndpoint(
            id=row.id,
            account_id=row.account_id,
            url=row.url,
            state=EndpointState(row.state),
            keys=keys,
            settings=EndpointSettings.model_validate(row.settings or {}),
        )

    def _ring(self) -> SecretKeyRing:
        if self._keys is None:
            raise SecretKeysError(
                "WEBHOOKS_SECRET_KEYS is not set: it seals endpoint secrets at rest "
                "(`id:<base64 of 32 bytes>`, newest first; see docs/security.md)"
            )
        return self._keys

    async def _audit(
        self,
        conn: AsyncConnection,
        actor: str,
        action: str,
        target: str,
        before: Endpoint | None,
        after: Endpoint | None,
    ) -> None:
        await self._audit_raw(
            conn,
            actor,
            action,
            target,
            before.model_dump(mode="json") if before else None,
            after.model_dump(mode="json") if after else None,
        )

    async def _audit_raw(
        self,
        conn: AsyncConnection,
        actor: str,
        action: str,
        target: str,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
    ) -> None:
        await self.store.insert_audit(
            conn,
            {
                "at": self._clock(),
                "actor": actor[:200],
                "action": action,
                "target": target,
                "before": before,
                "after": after,
            },
        )


def _check_version(endpoint: Endpoint, expected: int | None) -> None:
    if expected is not None and expected != endpoint.version:
        raise VersionConflictError(endpoint.id, expected, endpoint.version)


def _context(endpoint_id: str, secret_id: str) -> str:
    return f"endpoint-secret:{endpoint_id}:{secret_id}"


def _secret_text(key: bytes) -> SecretStr:
    return SecretStr(SECRET_PREFIX + base64.b64encode(key).decode())


def _endpoint(row: Row[Any], secrets: list[SecretInfo]) -> Endpoint:
    data = row._asdict()
    data["settings"] = EndpointSettings.model_validate(data["settings"] or {})
    return Endpoint.model_validate({**data, "secrets": secrets})


@asynccontextmanager
async def open_registry(
    settings: Settings,
    *,
    keys: bool = True,
    migrate: bool = False,
    resolver: Resolver = resolve_host,
) -> AsyncIterator[EndpointRegistry]:
    """The registry the settings name, for the block's duration.

    `keys=False` opens it without the secret key ring (publishers: they never see secrets).
    `migrate=True` brings an empty or older schema up to date (the worker and `webhooks
    dev`); otherwise a schema that is not current is refused with what to run."""
    ring = SecretKeyRing.from_settings(settings) if keys else None
    engine = create_engine(settings.registry_url())
    try:
        await (upgrade(engine) if migrate else require_current(engine))
        yield EndpointRegistry(
            RegistryStore(engine),
            ring,
            destinations=DestinationPolicy.from_settings(settings),
            resolver=resolver,
        )
    finally:
        await engine.dispose()
