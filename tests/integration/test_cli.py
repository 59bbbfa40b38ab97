"""`webhooks publish/status/retry/worker` end to end against the real dev server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess

import pytest
from temporalio.client import Client

from tests.conftest import BIN, EndpointPublisher
from tests.integration import Cli, eventually, registry_env, unique
from webhooks.config import Settings
from webhooks.core.models import DeliveryResult, DeliveryState, DeliveryStatus
from webhooks.dev.receiver import Receiver, Respond, scripted
from webhooks.registry.service import EndpointRegistry
from workflows.delivery import WebhookDelivery


@pytest.fixture
def cli(client: Client, settings: Settings, registry: EndpointRegistry) -> Cli:
    return Cli(client, settings)


async def test_publish_status_and_retry(client: Client, worker: None, cli: Cli) -> None:
    async with Receiver(scripted(Respond(503))) as rx:
        created = await cli.json("endpoint", "create", "--account-id", "acct_cli", "--url", rx.url)
        published = await cli.json(
            "publish",
            "--endpoint-id",
            created["endpoint"]["id"],
            "--event-type",
            "test.cli",
            "--data",
            '{"n": 1}',
            "--schedule",
            "0,1h",
            "--max-attempts",
            "3",
        )
        delivery_id = published["delivery_id"]
        handle = client.get_workflow_handle_for(WebhookDelivery.run, delivery_id)
        waiting = await eventually(
            lambda: handle.query(WebhookDelivery.status),
            lambda s: s.state is DeliveryState.RETRYING,
        )
        assert waiting.next_attempt_at is not None

        table = await cli("status", delivery_id)
        assert table.exit_code == 0, table.output
        assert "retrying after 1 attempt(s)" in table.stdout
        assert "http_status: HTTP 503" in table.stdout

        retried = await cli.json("retry", delivery_id)
        assert retried == {"delivery_id": delivery_id, "signalled": "retry_now"}
        result: DeliveryResult = await asyncio.wait_for(handle.result(), 30)
        assert result.state is DeliveryState.DELIVERED
        assert result.attempts == 2

        status = await cli.json("status", delivery_id)
        assert DeliveryStatus.model_validate(status["status"]).state is DeliveryState.DELIVERED
        assert [a["status_code"] for a in status["attempts"]] == [503, 200]
        plain = await cli("retry", delivery_id)
        assert plain.exit_code == 2
        assert "Temporal said" in plain.stderr


async def test_cli_errors_are_one_clear_line(cli: Cli) -> None:
    unknown = await cli("status", "msg_doesnotexist")
    assert unknown.exit_code == 2
    assert "no delivery with id 'msg_doesnotexist'" in unknown.stderr
    bad_duration = await cli(
        "publish", "--endpoint-id", "e",
        "--event-type", "t", "--data", "{}", "--schedule", "0,soon",
    )  # fmt: skip
    assert bad_duration.exit_code == 2
    assert "not a duration: 'soon'" in bad_duration.stderr
    negative = await cli(
        "publish", "--endpoint-id", "e",
        "--event-type", "t", "--data", "{}", "--schedule", "-5s",
    )  # fmt: skip
    assert negative.exit_code == 2
    assert "must not be negative" in negative.stderr
    cli.env["TEMPORAL_ADDRESS"] = "127.0.0.1:9"
    unreachable = await cli("retry", "msg_x")
    assert unreachable.exit_code == 2
    assert "cannot reach Temporal at 127.0.0.1:9" in unreachable.stderr


async def test_worker_command_serves_until_ctrl_c(
    client: Client, settings: Settings, publisher: EndpointPublisher
) -> None:
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "WEBHOOKS_TASK_QUEUE": settings.task_queue,
        **registry_env(settings),
    }
    process = await asyncio.create_subprocess_exec(
        str(BIN / "webhooks"), "worker", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        async with Receiver() as rx:
            endpoint = await publisher.endpoint(unique("ep_w"), rx.url)
            published = json.loads(
                (
                    await Cli(client, settings)(
                        "publish", "--endpoint-id", endpoint,
                        "--event-type", "test.worker", "--data", "{}", "--json",
                    )
                ).stdout
            )  # fmt: skip
            handle = client.get_workflow_handle_for(WebhookDelivery.run, published["delivery_id"])
            result = await asyncio.wait_for(handle.result(), 60)
            assert result.state is DeliveryState.DELIVERED
            assert len(rx.requests) == 1
    finally:
        process.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    assert b"task queue" in out
