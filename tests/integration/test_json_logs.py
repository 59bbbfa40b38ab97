"""`WEBHOOKS_LOG_FORMAT=json`: a real `webhooks worker` logs one JSON object per line, with
the delivery's fields on every attempt, and never a secret, a payload or a response."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from typing import Any

from temporalio.client import Client

from tests.conftest import BIN, SECRET, EndpointPublisher
from tests.integration import BOUND_SECONDS, fast, registry_env, unique
from webhooks.config import Settings
from webhooks.core.models import DeliveryResult, DeliveryState
from webhooks.dev.receiver import Receiver, Respond, scripted

MARKER = "payload-marker-7f3a"
EXCERPT = b"response-marker-91c2"


async def test_attempts_are_logged_as_json_lines(
    client: Client, settings: Settings, publisher: EndpointPublisher
) -> None:
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "WEBHOOKS_TASK_QUEUE": settings.task_queue,
        **registry_env(settings),
        "WEBHOOKS_CIRCUIT_ENABLED": "false",
        "WEBHOOKS_LOG_FORMAT": "json",
    }
    worker = await asyncio.create_subprocess_exec(
        str(BIN / "webhooks"), "worker", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    endpoint_id = unique("ep_logs")
    try:
        assert worker.stdout is not None
        await asyncio.wait_for(worker.stdout.readline(), BOUND_SECONDS)  # polling
        async with Receiver(scripted(Respond(500, EXCERPT), then=Respond(200, EXCERPT))) as rx:
            delivery_id = await publisher.publish(
                endpoint_id=endpoint_id,
                url=rx.url,
                event_type="test.logs",
                data={"note": MARKER},
                retry=fast(0, 0.1),
            )
            handle = client.get_workflow_handle(delivery_id, result_type=DeliveryResult)
            result = await asyncio.wait_for(handle.result(), BOUND_SECONDS)
            assert result.state is DeliveryState.DELIVERED
    finally:
        worker.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(worker.communicate(), BOUND_SECONDS)
    assert worker.returncode == 0, err.decode()
    text = err.decode()
    lines: list[dict[str, Any]] = [json.loads(line) for line in text.splitlines() if line]
    attempts = [e for e in lines if e.get("delivery_id") == delivery_id and "outcome" in e]
    assert [(e["attempt"], e["outcome"], e.get("status_code")) for e in attempts] == [
        (1, "retryable", 500),
        (2, "delivered", 200),
    ]
    for entry in attempts:
        assert entry["endpoint_id"] == endpoint_id
        assert entry["workflow_type"] == "WebhookDelivery"
        assert isinstance(entry["duration_ms"], float)
        assert entry["level"] == "info"
    assert attempts[0]["error_kind"] == "http_status"
    assert attempts[1]["error_kind"] == "none"
    (finished,) = [e for e in lines if e.get("delivery_id") == delivery_id and "state" in e]
    assert (finished["state"], finished["attempt"]) == ("delivered", 2)
    for leak in (MARKER, SECRET, SECRET.removeprefix("whsec_"), EXCERPT.decode()):
        assert leak not in text
