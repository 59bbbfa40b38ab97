"""Secret rotation through the registry: during the overlap both secrets sign (one `v1,`
entry each) and a receiver verifies with either, via `standardwebhooks`; after it only the
new one signs. An endpoint left with no unexpired secret sends nothing unsigned."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta

from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from temporalio.client import Client

from activities.endpoint_cache import EndpointCache
from activities.send import SendActivities, new_http_client
from tests.conftest import ACCOUNT
from tests.security import BOUND_SECONDS, fast, unique
from webhooks.config import Settings
from webhooks.core.models import DeliveryState, ErrorKind, SendRequest
from webhooks.dev.receiver import ReceivedRequest, Receiver
from webhooks.publisher import WebhookPublisher
from webhooks.registry.legacy import parse_entries
from webhooks.registry.models import NewEndpoint
from webhooks.registry.service import EndpointRegistry
from worker import running_worker
from workflows.delivery import WebhookDelivery

OLD = "whsec_" + base64.b64encode(b"rotation-old-key-9876543210").decode()


def verifies(secret: str, request: ReceivedRequest) -> bool:
    try:
        Webhook(secret).verify(request.body, request.headers)
    except WebhookVerificationError:
        return False
    return True


async def test_both_secrets_sign_during_the_overlap_and_only_the_new_one_after(
    client: Client, settings: Settings, registry: EndpointRegistry
) -> None:
    overlap = 8.0  # long enough for one delivery on a loaded machine
    settings = settings.model_copy(update={"registry_cache_seconds": 0.5})
    async with Receiver() as rx, running_worker(client, settings):
        created = await registry.create(
            NewEndpoint(id=unique("ep_rot"), account_id=ACCOUNT, url=rx.url + "/hook")
        )
        old = created.secret.get_secret_value()
        endpoint_id = created.endpoint.id
        publisher = WebhookPublisher(client, registry=registry, task_queue=settings.task_queue)

        async def one() -> ReceivedRequest:
            before = len(rx.requests)
            delivery_id = await publisher.publish(
                endpoint_id=endpoint_id, event_type="rotation.test", data={}, retry=fast(0)
            )
            handle = client.get_workflow_handle_for(WebhookDelivery.run, delivery_id)
            async with asyncio.timeout(BOUND_SECONDS):
                assert (await handle.result()).state is DeliveryState.DELIVERED
            [request] = rx.requests[before:]
            return request

        assert verifies(old, await one())
        rotated = await registry.rotate_secret(endpoint_id, overlap_seconds=overlap)
        new = rotated.secret.get_secret_value()
        ends = max(s.expires_at for s in rotated.endpoint.secrets if s.expires_at)
        await asyncio.sleep(settings.registry_cache_seconds + 0.1)  # the cached copy is gone

        during = await one()
        assert datetime.now(UTC) < ends, "the overlap ended before the delivery: too slow"
        assert len(during.headers["webhook-signature"].split()) == 2
        assert verifies(new, during)
        assert verifies(old, during)  # a receiver still on the old secret keeps working

        wait = (ends - datetime.now(UTC)).total_seconds() + settings.registry_cache_seconds
        await asyncio.sleep(max(0.0, wait) + 0.1)
        after = await one()
        assert len(after.headers["webhook-signature"].split()) == 1
        assert verifies(new, after)
        assert not verifies(old, after)


async def test_a_ref_whose_secrets_all_expired_signs_nothing(registry: EndpointRegistry) -> None:
    old_file = {"gone": [{"secret": OLD, "expires_at": "2020-01-01T00:00:00+00:00"}]}
    await registry.import_legacy(parse_entries(json.dumps(old_file)), account_id=ACCOUNT)
    resolved = await registry.resolve_legacy("gone")
    assert resolved is not None
    assert resolved.keys == ()
    async with Receiver() as rx, new_http_client(connect_timeout=1, max_connections=2) as http:
        result = await SendActivities(http, EndpointCache(registry)).send_webhook(
            SendRequest(delivery_id="msg_x", url=rx.url, body="{}", secret_ref="gone")
        )
        assert rx.requests == []
    assert result.error_kind is ErrorKind.SECRET_UNAVAILABLE
    assert result.error is not None
    assert "no unexpired secret" in result.error
    assert datetime.now(UTC) - timedelta(days=1) < result.started_at
