"""End to end on the real dev server: a refused destination dead-letters at once with
`blocked_destination` and no request, redirects are recorded and never followed, and
endless or dripping response bodies are cut off."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from ipaddress import IPv4Network
from pathlib import Path

import pytest
from temporalio.client import Client

from activities.safe_transport import DestinationPolicy
from activities.send import MAX_RESPONSE_BYTES, SendActivities, new_http_client
from tests.security import BOUND_SECONDS, fast, unique
from webhooks.config import Settings
from webhooks.core.models import (
    DeadLetterReason,
    DeadLetterView,
    DeliveryResult,
    DeliveryState,
    ErrorKind,
    Outcome,
    SendRequest,
)
from webhooks.dev.receiver import Receiver, Respond, Stream, scripted
from webhooks.publisher import WebhookPublisher
from webhooks.secrets import FileSecretStore
from worker import running_worker
from workflows.dead_letter import DeadLetter
from workflows.delivery import WebhookDelivery

BODY = '{"id":"evt_r","type":"guard.test","timestamp":"2026-11-28T12:00:00Z","data":{}}'


@pytest.fixture
def strict(settings: Settings) -> Settings:
    """The production default: private destinations refused."""
    return settings.model_copy(update={"allow_private_destinations": False})


@pytest.fixture
async def strict_worker(client: Client, strict: Settings) -> AsyncIterator[None]:
    async with running_worker(client, strict):
        yield


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
async def test_a_refused_destination_dead_letters_at_once_and_sends_nothing(
    client: Client, strict: Settings, strict_worker: None, host: str
) -> None:
    publisher = WebhookPublisher(
        client, task_queue=strict.task_queue, secrets=strict.secret_store()
    )
    async with Receiver() as rx:
        delivery_id = await publisher.publish(
            endpoint_id=unique("ep_guard"),
            url=f"http://{host}:{rx.port}/hook",
            event_type="guard.test",
            data={"n": 1},
            retry=fast(0, 0.1, 0.1, 0.1),
        )
        handle = client.get_workflow_handle_for(WebhookDelivery.run, delivery_id)
        async with asyncio.timeout(BOUND_SECONDS):
            result = await handle.result()
        assert rx.requests == []
    assert result.state is DeliveryState.DEAD_LETTERED
    assert result.dead_letter_reason is DeadLetterReason.BLOCKED_DESTINATION
    assert result.attempts == 1  # permanent: never retried
    [row] = await handle.query(WebhookDelivery.attempts)
    assert row.outcome is Outcome.PERMANENT
    assert row.error_kind is ErrorKind.BLOCKED_DESTINATION
    assert row.error is not None
    assert "loopback" in row.error
    assert result.dead_letter_id is not None
    letter = client.get_workflow_handle_for(DeadLetter.run, result.dead_letter_id)
    view: DeadLetterView = await letter.query(DeadLetter.entry)
    assert view.entry.reason is DeadLetterReason.BLOCKED_DESTINATION


async def test_require_https_at_send_dead_letters_plain_http(
    client: Client, settings: Settings
) -> None:
    https_only = settings.model_copy(update={"require_https": True})
    publisher = WebhookPublisher(client, task_queue=settings.task_queue, secrets=None)
    async with Receiver() as rx, running_worker(client, https_only):
        delivery_id = await publisher.publish(
            endpoint_id=unique("ep_https"),
            url=rx.url + "/hook",
            event_type="guard.test",
            data={},
            retry=fast(0, 0.1),
        )
        handle = client.get_workflow_handle_for(WebhookDelivery.run, delivery_id)
        async with asyncio.timeout(BOUND_SECONDS):
            result: DeliveryResult = await handle.result()
        assert rx.requests == []
    assert result.dead_letter_reason is DeadLetterReason.BLOCKED_DESTINATION


async def test_a_redirect_is_a_failure_recorded_by_host_only_and_never_followed(
    client: Client, worker: None, publisher: WebhookPublisher
) -> None:
    target = "http://169.254.169.254/latest/meta-data/iam?token=s3cr3t-in-location"
    redirect = Respond(302, b"moved", {"location": target, "set-cookie": "session=abc123"})
    async with Receiver(scripted(redirect, redirect)) as rx:
        delivery_id = await publisher.publish(
            endpoint_id=unique("ep_redirect"),
            url=rx.url + "/hook",
            event_type="guard.test",
            data={},
            retry=fast(0, 0.1),
        )
        handle = client.get_workflow_handle_for(WebhookDelivery.run, delivery_id)
        async with asyncio.timeout(BOUND_SECONDS):
            result = await handle.result()
        # One request per attempt, all to the original URL: the Location was not visited.
        assert [r.path for r in rx.requests] == ["/hook", "/hook"]
    assert result.dead_letter_reason is DeadLetterReason.EXHAUSTED
    rows = await handle.query(WebhookDelivery.attempts)
    assert [(r.status_code, r.error_kind, r.error) for r in rows] == [
        (302, ErrorKind.REDIRECT, "redirect to 169.254.169.254")
    ] * 2
    # Neither the Location's path and query nor any response header is kept.
    recorded = json.dumps([r.model_dump(mode="json") for r in rows])
    assert "s3cr3t-in-location" not in recorded
    assert "abc123" not in recorded


# --- response bodies, with the production client (guarded, loopback allowlisted) -------------


@pytest.fixture
async def production_sender(tmp_path: Path) -> AsyncIterator[SendActivities]:
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"default": "whsec_cmVzcG9uc2UtdGVzdC1rZXktMDEyMzQ1"}))
    policy = DestinationPolicy(allowed_networks=(IPv4Network("127.0.0.0/8"),))
    async with new_http_client(connect_timeout=1, max_connections=4, destinations=policy) as h:
        yield SendActivities(h, FileSecretStore(secrets), timeout_seconds=2, excerpt_bytes=100)


def to(url: str) -> SendRequest:
    return SendRequest(delivery_id="msg_body", url=url, body=BODY, secret_ref="default")


async def test_a_1_gib_response_is_cut_at_the_cap(production_sender: SendActivities) -> None:
    # Announces 1 GiB, sends exactly the cap plus one chunk, then hangs: only a read that
    # stops at the cap returns; a larger cap waits for bytes that never come (a timeout).
    chunk = 16 * 1024
    big = Stream(total=1 << 30, chunk=chunk, stop_after=MAX_RESPONSE_BYTES + chunk)
    async with Receiver(scripted(big)) as rx:
        async with asyncio.timeout(BOUND_SECONDS):
            result = await production_sender.send_webhook(to(rx.url + "/big"))
    # Delivered (a 200), read only up to the cap, and only a short excerpt kept.
    assert result.error_kind is None
    assert result.status_code == 200
    assert result.response_excerpt == "x" * 100
    # A compressed body could expand past the cap: the request asks for none.
    assert rx.requests[0].headers["accept-encoding"] == "identity"


async def test_a_slow_drip_is_cut_off_by_the_total_timeout(
    production_sender: SendActivities,
) -> None:
    # 120 bytes, one every half second: a full minute if nobody cut it short.
    async with Receiver(scripted(Stream(total=120, chunk=1, interval=0.5))) as rx:
        async with asyncio.timeout(BOUND_SECONDS):
            result = await production_sender.send_webhook(to(rx.url + "/drip"))
    assert result.error_kind is ErrorKind.TIMEOUT
    assert result.status_code is None
    assert result.response_excerpt is None


async def test_excerpts_can_be_turned_off(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"default": "whsec_cmVzcG9uc2UtdGVzdC1rZXktMDEyMzQ1"}))
    policy = DestinationPolicy(allow_private=True)
    async with (
        Receiver(scripted(Respond(500, b"user@example.com leaked by the receiver"))) as rx,
        new_http_client(connect_timeout=1, max_connections=4, destinations=policy) as h,
    ):
        acts = SendActivities(h, FileSecretStore(secrets), timeout_seconds=2, excerpt_bytes=0)
        result = await acts.send_webhook(to(rx.url))
    assert result.status_code == 500
    assert result.response_excerpt is None
