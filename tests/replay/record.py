"""Record workflow histories for the replay test.

    .venv/bin/python -m tests.replay.record

Runs, on a throwaway dev server, a delivery that succeeds after a retry, one that is
dead-lettered, and a dead letter that is redelivered (and one discarded), then writes each
workflow's history to `tests/replay/histories/<name>.json`. Re-record deliberately, when a
workflow change is *meant* to be incompatible, and say so in the commit: old histories that no
longer replay are running workflows that a deploy would break.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import sysconfig
import tempfile
import uuid
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from tests.integration import settled
from webhooks.config import Settings
from webhooks.core import search_attributes as sa
from webhooks.core.models import (
    DeadLetterView,
    DeliveryResult,
    DeliveryState,
    DiscardRequest,
    RedeliverRequest,
    RetrySchedule,
)
from webhooks.dev.receiver import Hang, Receiver, Respond, scripted
from webhooks.publisher import WebhookPublisher
from worker import running_worker
from workflows.dead_letter import DeadLetter
from workflows.delivery import WebhookDelivery

HISTORIES = Path(__file__).parent / "histories"
BIN = Path(sysconfig.get_path("scripts"))
SCHEDULE = RetrySchedule(schedule_seconds=[0, 0.2, 0.2], jitter=0.2, throttled_min_seconds=0)


async def save(name: str, handle: WorkflowHandle[Any, Any]) -> None:
    history = await handle.fetch_history()
    path = HISTORIES / f"{name}.json"
    path.write_text(json.dumps(json.loads(history.to_json()), indent=1) + "\n")
    print(f"wrote {path.relative_to(Path.cwd())} ({len(history.events)} events)")


async def record(client: Client, settings: Settings) -> None:
    publisher = WebhookPublisher(
        client, task_queue=settings.task_queue, secrets=settings.secret_store()
    )

    async def deliver(receiver: Receiver) -> WorkflowHandle[WebhookDelivery, DeliveryResult]:
        delivery_id = await publisher.publish(
            endpoint_id="ep_replay",
            url=receiver.url,
            event_type="stream.settled",
            data=settled(),
            event_id=f"evt_{uuid.uuid4().hex[:8]}",
            retry=SCHEDULE,
        )
        return client.get_workflow_handle_for(WebhookDelivery.run, delivery_id)

    # Delivered on the third attempt, after a 500 and a timeout.
    async with Receiver(scripted(Respond(500), Hang(2))) as rx:
        delivered = await deliver(rx)
        assert (await delivered.result()).state is DeliveryState.DELIVERED
    await save("WebhookDelivery-delivered", delivered)

    # Exhausted, then redelivered from the dead-letter queue, then delivered.
    async with Receiver(scripted(Respond(503), Respond(503), Respond(503))) as rx:
        failed = await deliver(rx)
        result = await failed.result()
        assert result.state is DeliveryState.DEAD_LETTERED
        assert result.dead_letter_id is not None
        await save("WebhookDelivery-dead-lettered", failed)
        letter = client.get_workflow_handle_for(DeadLetter.run, result.dead_letter_id)
        await letter.signal(DeadLetter.redeliver, RedeliverRequest(requested_by="record"))
        view: DeadLetterView = await letter.result()
        await save("DeadLetter-redelivered", letter)
        assert view.redelivery_run_id is not None
        rerun = client.get_workflow_handle_for(
            WebhookDelivery.run, failed.id, run_id=view.redelivery_run_id
        )
        assert (await rerun.result()).state is DeliveryState.DELIVERED
        await save("WebhookDelivery-redelivered", rerun)

    # Gone at once, then discarded by an operator.
    async with Receiver(scripted(Respond(410))) as rx:
        gone = await deliver(rx)
        result = await gone.result()
        assert result.dead_letter_id is not None
        letter = client.get_workflow_handle_for(DeadLetter.run, result.dead_letter_id)
        await letter.signal(DeadLetter.discard, DiscardRequest(requested_by="record"))
        await letter.result()
        await save("DeadLetter-discarded", letter)


async def main() -> None:
    HISTORIES.mkdir(exist_ok=True)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        os.environ.pop(var, None)
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN / "temporal"),
        search_attributes=sa.ALL,
        data_converter=pydantic_data_converter,
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            secrets_file = Path(tmp) / "secrets.json"
            secrets_file.write_text(json.dumps({"default": secret}))
            settings = Settings(
                task_queue="webhooks-replay",
                secrets_file=secrets_file,
                allow_private_destinations=True,
                http_timeout_seconds=1,
                connect_timeout_seconds=1,
            )
            async with running_worker(env.client, settings):
                await record(env.client, settings)
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
    # The SDK's Rust runtime threads can abort CPython's finalization (SIGABRT, "PyGILState_
    # Release: thread state must be current", temporalio/sdk-python#300); everything is written.
    os._exit(0)
