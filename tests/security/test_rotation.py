"""Secret rotation: every unexpired secret signs (one `v1,` entry each) and a receiver
verifies with either, via `standardwebhooks`; an expired secret stops signing on its own;
a broken store fails loudly without ever printing a secret."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from temporalio.client import Client

from activities.send import SendActivities, new_http_client
from tests.security import BOUND_SECONDS, fast, unique
from webhooks.config import Settings
from webhooks.core.models import DeliveryState, ErrorKind, SendRequest
from webhooks.dev.receiver import ReceivedRequest, Receiver
from webhooks.publisher import WebhookPublisher, build_request
from webhooks.secrets import (
    FileSecretStore,
    NoActiveSecretError,
    SecretStoreError,
    UnknownSecretRefError,
    parse_secrets,
)
from worker import running_worker
from workflows.delivery import WebhookDelivery

NEW_KEY, OLD_KEY = b"rotation-new-key-0123456789", b"rotation-old-key-9876543210"
NEW = "whsec_" + base64.b64encode(NEW_KEY).decode()
OLD = "whsec_" + base64.b64encode(OLD_KEY).decode()
T0 = datetime(2026, 12, 1, tzinfo=UTC)


def rotating(expires_at: datetime) -> dict[str, object]:
    return {
        "partner": [
            {"secret": NEW},
            {"secret": OLD, "expires_at": expires_at.isoformat().replace("+00:00", "Z")},
        ]
    }


def write(path: Path, content: object) -> Path:
    path.write_text(json.dumps(content))
    return path


def verifies(secret: str, request: ReceivedRequest) -> bool:
    try:
        Webhook(secret).verify(request.body, request.headers)
    except WebhookVerificationError:
        return False
    return True


async def deliver(client: Client, settings: Settings, secrets: Path) -> ReceivedRequest:
    """One real delivery through the dev server, signed by the store in `secrets`."""
    settings = settings.model_copy(update={"secrets_file": secrets})
    store = settings.secret_store()
    publisher = WebhookPublisher(client, task_queue=settings.task_queue, secrets=store)
    async with Receiver() as rx, running_worker(client, settings):
        delivery_id = await publisher.publish(
            endpoint_id=unique("ep_rot"),
            url=rx.url + "/hook",
            event_type="rotation.test",
            data={"n": 1},
            secret_ref="partner",
            retry=fast(0),
        )
        handle = client.get_workflow_handle_for(WebhookDelivery.run, delivery_id)
        async with asyncio.timeout(BOUND_SECONDS):
            result = await handle.result()
        assert result.state is DeliveryState.DELIVERED
        [request] = rx.requests
        return request


async def test_during_rotation_both_secrets_sign_and_either_verifies(
    client: Client, settings: Settings, tmp_path: Path
) -> None:
    secrets = write(tmp_path / "s.json", rotating(datetime.now(UTC) + timedelta(days=1)))
    request = await deliver(client, settings, secrets)
    assert len(request.headers["webhook-signature"].split()) == 2
    assert verifies(NEW, request)
    assert verifies(OLD, request)  # a receiver still on the old secret keeps working


async def test_an_expired_secret_no_longer_signs(
    client: Client, settings: Settings, tmp_path: Path
) -> None:
    secrets = write(tmp_path / "s.json", rotating(datetime.now(UTC) - timedelta(seconds=1)))
    request = await deliver(client, settings, secrets)
    assert len(request.headers["webhook-signature"].split()) == 1
    assert verifies(NEW, request)
    assert not verifies(OLD, request)


def test_expiry_takes_effect_without_touching_the_file(tmp_path: Path) -> None:
    now = [T0 - timedelta(minutes=1)]
    store = FileSecretStore(write(tmp_path / "s.json", rotating(T0)), clock=lambda: now[0])
    assert store.keys("partner") == (NEW_KEY, OLD_KEY)
    now[0] = T0
    assert store.keys("partner") == (NEW_KEY,)
    assert parse_secrets(json.dumps(rotating(T0)), now=T0 - timedelta(seconds=1)) == {
        "partner": (NEW_KEY, OLD_KEY)
    }
    assert parse_secrets(json.dumps(rotating(T0)), now=T0) == {"partner": (NEW_KEY,)}


async def test_a_ref_whose_secrets_all_expired_signs_nothing_and_publishes_nothing(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path / "s.json",
        {"gone": [{"secret": OLD, "expires_at": "2020-01-01T00:00:00+00:00"}], "ok": NEW},
    )
    store = FileSecretStore(path)
    assert "gone" not in store
    assert "ok" in store
    with pytest.raises(NoActiveSecretError, match="'gone' has no unexpired secret"):
        store.keys("gone")
    with pytest.raises(UnknownSecretRefError, match="no unexpired secret"):
        build_request(
            endpoint_id="ep",
            url="https://e.example/",
            event_type="t",
            data={},
            secret_ref="gone",
            secrets=store,
        )
    async with Receiver() as rx, new_http_client(connect_timeout=1, max_connections=2) as http:
        result = await SendActivities(http, store).send_webhook(
            SendRequest(delivery_id="msg_x", url=rx.url, body="{}", secret_ref="gone")
        )
        assert rx.requests == []
    assert result.error_kind is ErrorKind.SECRET_UNAVAILABLE


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"secret": OLD, "expires_at": "2026-12-01T00:00:00"}, "with a zone"),
        ({"secret": OLD, "expires_at": "next tuesday"}, "with a zone"),
        ({"secret": OLD, "expires_at": 1764547200}, "with a zone"),
        ({"secret": OLD, "expire_at": "2026-12-01T00:00:00Z"}, "unknown field(s) expire_at"),
        ({"secret": "whsec_not base64!"}, "signing secret"),
        ({"secret": 42}, "must be a secret or a list of secrets"),
        ({"expires_at": "2026-12-01T00:00:00Z"}, "must be a secret or a list of secrets"),
    ],
)
def test_bad_rotation_entries_are_rejected_naming_the_ref_never_the_secret(
    tmp_path: Path, entry: dict[str, object], message: str
) -> None:
    path = write(tmp_path / "s.json", {"partner": [{"secret": NEW}, entry]})
    with pytest.raises(SecretStoreError) as info:
        FileSecretStore(path)
    text = str(info.value)
    assert "'partner'" in text
    assert message in text
    for secret in (NEW, OLD, NEW.removeprefix("whsec_"), OLD.removeprefix("whsec_")):
        assert secret not in text
