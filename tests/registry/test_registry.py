"""The registry service against real databases: SQLite and PostgreSQL 15."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime, timedelta

import pytest

from webhooks.core.models import RetrySchedule
from webhooks.core.signing import secret_key
from webhooks.registry.errors import (
    EndpointNotFoundError,
    EndpointUnavailableError,
    VersionConflictError,
)
from webhooks.registry.models import (
    EndpointChanges,
    EndpointSettings,
    EndpointState,
    NewEndpoint,
)
from webhooks.registry.service import IMPORTED_REASON, EndpointRegistry

URL = "https://hooks.example.com/in"


def new(account: str = "acct_1", **fields: object) -> NewEndpoint:
    return NewEndpoint.model_validate({"account_id": account, "url": URL, **fields})


async def test_create_then_read_it_back(registry: EndpointRegistry) -> None:
    created = await registry.create(
        new(event_types=["stream.settled", "payment.tick"], description="main"), actor="ann"
    )
    endpoint = created.endpoint
    assert endpoint.id.startswith("ep_")
    assert len(endpoint.id) == 29
    assert created.secret.get_secret_value().startswith("whsec_")
    assert len(secret_key(created.secret.get_secret_value())) == 24
    assert endpoint.state is EndpointState.ENABLED
    assert endpoint.version == 1
    assert endpoint.event_types == ["payment.tick", "stream.settled"]
    assert len(endpoint.secrets) == 1
    assert endpoint.secrets[0].expires_at is None
    assert await registry.get(endpoint.id) == endpoint
    resolved = await registry.resolve(endpoint.id)
    assert resolved is not None
    assert resolved.keys == (secret_key(created.secret.get_secret_value()),)
    assert resolved.url == URL
    assert resolved.account_id == "acct_1"
    [entry] = await registry.audit(target=endpoint.id)
    assert (entry.actor, entry.action, entry.before) == ("ann", "create", None)
    assert entry.after is not None
    assert entry.after["url"] == URL
    assert created.secret.get_secret_value() not in str(entry.after)


async def test_list_filters_by_account_and_state_and_pages(registry: EndpointRegistry) -> None:
    a1 = (await registry.create(new("acct_a"))).endpoint
    a2 = (await registry.create(new("acct_a"))).endpoint
    b1 = (await registry.create(new("acct_b"))).endpoint
    await registry.disable(a2.id, reason="test")
    assert {e.id for e in await registry.list_endpoints()} == {a1.id, a2.id, b1.id}
    assert {e.id for e in await registry.list_endpoints(account_id="acct_a")} == {a1.id, a2.id}
    enabled = await registry.list_endpoints(account_id="acct_a", state=EndpointState.ENABLED)
    assert [e.id for e in enabled] == [a1.id]
    everything = sorted([a1.id, a2.id, b1.id])
    first = await registry.list_endpoints(limit=2)
    rest = await registry.list_endpoints(limit=2, after_id=first[-1].id)
    assert [e.id for e in first + rest] == everything


async def test_subscribers_are_enabled_endpoints_whose_filter_matches(
    registry: EndpointRegistry,
) -> None:
    settled = (await registry.create(new(event_types=["stream.settled"]))).endpoint
    everything = (await registry.create(new())).endpoint
    ticks = (await registry.create(new(event_types=["payment.tick"]))).endpoint
    off = (await registry.create(new())).endpoint
    await registry.disable(off.id)
    await registry.create(new("acct_other"))
    found = await registry.subscribers("acct_1", "stream.settled")
    assert {e.id for e in found} == {settled.id, everything.id}
    assert {e.id for e in await registry.subscribers("acct_1", "payment.tick")} == {
        ticks.id,
        everything.id,
    }


async def test_update_checks_the_version(registry: EndpointRegistry) -> None:
    endpoint = (await registry.create(new())).endpoint
    changed = await registry.update(
        endpoint.id,
        EndpointChanges(url="https://other.example.com/", description="moved"),
        expected_version=1,
    )
    assert (changed.url, changed.description, changed.version) == (
        "https://other.example.com/",
        "moved",
        2,
    )
    with pytest.raises(VersionConflictError, match="version 2, not 1"):
        await registry.update(endpoint.id, EndpointChanges(description="lost"), expected_version=1)
    assert (await registry.get(endpoint.id)).description == "moved"


async def test_concurrent_updates_at_the_same_version_one_wins(
    registry: EndpointRegistry,
) -> None:
    endpoint = (await registry.create(new())).endpoint
    results = await asyncio.gather(
        *(
            registry.update(
                endpoint.id, EndpointChanges(description=f"edit {i}"), expected_version=1
            )
            for i in range(4)
        ),
        return_exceptions=True,
    )
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(won) == 1
    assert len(lost) == 3
    assert all(isinstance(r, VersionConflictError) for r in lost)
    assert (await registry.get(endpoint.id)).version == 2


async def test_update_of_filter_and_settings(registry: EndpointRegistry) -> None:
    endpoint = (await registry.create(new(event_types=["a.b"]))).endpoint
    settings = EndpointSettings(
        retry=RetrySchedule(schedule_seconds=[0, 1]), timeout_seconds=3, headers={"x-k": "v"}
    )
    changed = await registry.update(endpoint.id, EndpointChanges(settings=settings))
    assert changed.settings == settings
    assert changed.event_types == ["a.b"]
    everything = await registry.update(endpoint.id, EndpointChanges(event_types=None))
    assert everything.event_types is None
    assert everything.settings == settings
    resolved = await registry.resolve(endpoint.id)
    assert resolved is not None
    assert resolved.settings == settings


async def test_disable_enable_delete(registry: EndpointRegistry) -> None:
    endpoint = (await registry.create(new())).endpoint
    disabled = await registry.disable(endpoint.id, reason="customer asked", actor="bob")
    assert disabled.state is EndpointState.DISABLED
    assert (disabled.disabled_reason, disabled.disabled_by) == ("customer asked", "bob")
    assert disabled.disabled_at is not None
    with pytest.raises(EndpointUnavailableError, match="disabled"):
        await registry.deliverable(endpoint.id)
    enabled = await registry.enable(endpoint.id)
    assert enabled.state is EndpointState.ENABLED
    assert enabled.disabled_reason is None
    assert (await registry.deliverable(endpoint.id)).id == endpoint.id
    with pytest.raises(EndpointUnavailableError, match="does not belong to account 'acct_x'"):
        await registry.deliverable(endpoint.id, account_id="acct_x")
    await registry.delete(endpoint.id, actor="carol")
    assert await registry.resolve(endpoint.id) is None
    with pytest.raises(EndpointNotFoundError):
        await registry.get(endpoint.id)
    with pytest.raises(EndpointNotFoundError):
        await registry.delete(endpoint.id)
    actions = [e.action for e in await registry.audit(target=endpoint.id)]
    assert actions == ["delete", "enable", "disable", "create"]


async def test_rotation_keeps_the_old_secret_signing_until_the_overlap_ends(
    registry: EndpointRegistry,
) -> None:
    now = datetime.now(UTC)
    clock = [now]
    registry._clock = lambda: clock[0]
    created = await registry.create(new())
    old = secret_key(created.secret.get_secret_value())
    clock[0] = now = now + timedelta(seconds=1)
    rotated = await registry.rotate_secret(created.endpoint.id, overlap_seconds=3600)
    fresh = secret_key(rotated.secret.get_secret_value())
    assert fresh != old
    assert rotated.endpoint.version == 2
    resolved = await registry.resolve(created.endpoint.id)
    assert resolved is not None
    assert resolved.keys == (fresh, old)
    expiries = sorted(str(s.expires_at) for s in rotated.endpoint.secrets)
    assert expiries == sorted([str(now + timedelta(hours=1)), "None"])
    clock[0] = now + timedelta(hours=1, seconds=1)
    resolved = await registry.resolve(created.endpoint.id)
    assert resolved is not None
    assert resolved.keys == (fresh,)
    clock[0] += timedelta(seconds=1)
    again = await registry.rotate_secret(created.endpoint.id, overlap_seconds=0)
    assert len(again.endpoint.secrets) == 2  # the expired one is removed
    resolved = await registry.resolve(created.endpoint.id)
    assert resolved is not None
    assert resolved.keys == (secret_key(again.secret.get_secret_value()),)


async def test_import_legacy_refs_is_idempotent(registry: EndpointRegistry) -> None:
    k1, k2 = b"k" * 24, b"j" * 24
    later = datetime.now(UTC) + timedelta(days=1)
    entries = {"default": ((k1, None),), "rotating": ((k2, None), (k1, later))}
    first = await registry.import_legacy(entries, account_id="acct_1", actor="ops")
    assert [(i.ref, i.created) for i in first] == [("default", True), ("rotating", True)]
    again = await registry.import_legacy(entries, account_id="acct_1")
    assert [(i.endpoint_id, i.created) for i in again] == [(i.endpoint_id, False) for i in first]
    resolved = await registry.resolve_legacy("rotating")
    assert resolved is not None
    assert resolved.keys == (k2, k1)
    endpoint = await registry.get(first[0].endpoint_id)
    assert endpoint.state is EndpointState.DISABLED
    assert endpoint.disabled_reason == IMPORTED_REASON
    assert endpoint.legacy_ref == "default"
    assert await registry.resolve_legacy("missing") is None


async def test_record_audit_for_actions_taken_elsewhere(registry: EndpointRegistry) -> None:
    await registry.record_audit(
        actor="console:ann", action="dlq.redeliver", target="msg_1", after={"n": 1}
    )
    [entry] = await registry.audit(target="msg_1")
    assert (entry.actor, entry.action, entry.after, entry.before) == (
        "console:ann",
        "dlq.redeliver",
        {"n": 1},
        None,
    )


async def test_reseal_moves_every_secret_to_the_newest_key(
    registry: EndpointRegistry,
) -> None:
    from webhooks.registry.crypto import SecretKeyRing

    created = await registry.create(new())
    old_ring = registry._keys
    assert old_ring is not None
    newer = "k2:" + base64.b64encode(b"n" * 32).decode()
    registry._keys = SecretKeyRing.from_text(
        f"{newer},k1:" + base64.b64encode(b"registry-test-key-32-bytes-long!").decode()
    )
    assert await registry.reseal() == 1
    assert await registry.reseal() == 0
    registry._keys = SecretKeyRing.from_text(newer)  # the old key is gone
    resolved = await registry.resolve(created.endpoint.id)
    assert resolved is not None
    assert resolved.keys == (secret_key(created.secret.get_secret_value()),)
