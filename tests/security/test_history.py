"""With the codec on, Temporal's histories hold neither the signing secret nor the event's
content, as anyone with access to the server (or its database, or the UI) would see them;
an admin with an API token sees them decoded through the console's codec endpoint."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import subprocess
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from pydantic import SecretStr
from temporalio.client import Client, WorkflowFailureError

from tests.conftest import BIN, SECRET, EndpointPublisher
from tests.security import BOUND_SECONDS, fast, unique
from webhooks.codec import codec_from_settings, generate_key
from webhooks.config import Settings
from webhooks.core.models import DeliveryResult, DeliveryState
from webhooks.core.roles import Role
from webhooks.dev.receiver import Receiver, Respond, scripted
from webhooks.publisher import data_converter
from webhooks.server.app import serve_console
from webhooks.server.auth import new_token
from webhooks.server.settings import ConsoleSettings, TokenConfig
from worker import running_worker
from workflows.delivery import WebhookDelivery

TOKEN, TOKEN_HASH = new_token()
KEY = base64.b64decode(SECRET.removeprefix("whsec_"))
SECRET_FORMS = [SECRET, SECRET.removeprefix("whsec_"), KEY.decode("latin-1"), KEY.hex()]
"""The secret as configured, its base64 and its raw key bytes (as text and as hex)."""


@pytest.fixture
def codec_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"codec_keys": SecretStr(f"k1:{generate_key()}")})


@pytest.fixture
async def codec_client(client: Client, codec_settings: Settings) -> Client:
    return await Client.connect(
        client.service_client.config.target_host,
        namespace=client.namespace,
        data_converter=data_converter(codec_settings),
    )


@pytest.fixture
async def codec_worker(codec_client: Client, codec_settings: Settings) -> AsyncIterator[None]:
    async with running_worker(codec_client, codec_settings):
        yield


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def readable(dump: str) -> str:
    """The dump plus every base64 string in it decoded, as a reader of the database would."""
    parts = [dump]
    for text in strings(json.loads(dump)):
        try:
            parts.append(base64.b64decode(text, validate=True).decode("utf-8", "replace"))
        except (binascii.Error, ValueError):
            continue
    return "\n".join(parts)


def show(client: Client, workflow_id: str, *codec: str) -> str:
    """`temporal workflow show --output json`, as an operator would run it."""
    command = [
        str(BIN / "temporal"),
        "workflow",
        "show",
        "--workflow-id",
        workflow_id,
        "--address",
        client.service_client.config.target_host,
        "--namespace",
        client.namespace,
        "--output",
        "json",
        *codec,
    ]
    return subprocess.run(command, check=True, capture_output=True, text=True, timeout=60).stdout


async def test_histories_hold_neither_secret_nor_payload_while_the_codec_is_on(
    codec_client: Client,
    codec_settings: Settings,
    codec_worker: None,
    publisher: EndpointPublisher,
) -> None:
    marker = unique("PAYLOAD-MARKER")
    reply = unique("REPLY-MARKER")
    publisher = publisher.on(codec_client, codec_settings.task_queue)
    results: list[DeliveryResult] = []
    async with (
        Receiver(lambda _: Respond(200, reply.encode())) as ok,
        Receiver(scripted(then=Respond(500, reply.encode()))) as failing,
    ):
        for rx in (ok, failing):
            delivery_id = await publisher.publish(
                endpoint_id=unique("ep_hist"),
                url=rx.url + "/hook",
                event_type="history.test",
                data={"marker": marker, "note": "customer-visible content"},
                retry=fast(0, 0.1),
            )
            handle = codec_client.get_workflow_handle_for(WebhookDelivery.run, delivery_id)
            async with asyncio.timeout(BOUND_SECONDS):
                results.append(await handle.result())
        assert marker.encode() in ok.requests[0].body  # the receiver got the real thing
    delivered, dead = results
    assert delivered.state is DeliveryState.DELIVERED
    assert dead.state is DeliveryState.DEAD_LETTERED
    assert dead.dead_letter_id is not None
    ids = [delivered.delivery_id, dead.delivery_id, dead.dead_letter_id]

    secret_forms = SECRET_FORMS
    for workflow_id in ids:
        history = await codec_client.get_workflow_handle(workflow_id).fetch_history()
        cli_dump = await asyncio.to_thread(show, codec_client, workflow_id)
        for dump in (cli_dump, history.to_json()):
            seen = readable(dump)
            assert workflow_id in seen  # it is the right history...
            for hidden in (marker, reply, "customer-visible content", *secret_forms):
                assert hidden not in seen  # ...and it is opaque

    # Control: the same dump through the console's codec endpoint, with an admin's token,
    # shows the content, so the checks above would have found it had it been in the clear.
    assert codec_from_settings(codec_settings) is not None
    console = ConsoleSettings(
        tokens=[TokenConfig(name="history-test", token_hash=TOKEN_HASH, role=Role.ADMIN)]
    )
    stop, ready, said = asyncio.Event(), asyncio.Event(), list[str]()

    def announce(message: str) -> None:
        said.append(message)
        ready.set()

    serving = asyncio.create_task(
        serve_console(codec_settings, console, stop, port=0, announce=announce, client=codec_client)
    )
    try:
        async with asyncio.timeout(BOUND_SECONDS):
            await ready.wait()
        endpoint = said[0].split()[-1] + "/codec"
        auth = ["--codec-endpoint", endpoint, "--codec-auth", f"Bearer {TOKEN}"]
        for workflow_id in ids:
            decoded = readable(await asyncio.to_thread(show, codec_client, workflow_id, *auth))
            assert marker in decoded
            for hidden in secret_forms:
                assert hidden not in decoded  # never stored at all, encrypted or not
        dead_letter = readable(
            await asyncio.to_thread(show, codec_client, dead.dead_letter_id, *auth)
        )
        assert reply in dead_letter  # attempt excerpts travel with the dead letter
    finally:
        stop.set()
        await serving


async def test_a_malformed_input_s_validation_message_is_encrypted_too(
    codec_client: Client, codec_settings: Settings, codec_worker: None
) -> None:
    marker = unique("BAD-INPUT-MARKER")
    workflow_id = unique("bad-input")
    handle = await codec_client.start_workflow(
        "WebhookDelivery",
        {"delivery_id": f"{marker} has spaces", "url": "ftp://example.com"},
        id=workflow_id,
        task_queue=codec_settings.task_queue,
    )
    with pytest.raises(WorkflowFailureError) as failure:
        await asyncio.wait_for(handle.result(), BOUND_SECONDS)
    # It is refused into the dead-letter queue (which holds the raw input and the
    # validation message naming the bad value)...
    assert "invalid input, dead-lettered" in str(failure.value.cause)
    # ...but neither the message nor the input is readable in the stored history.
    history = await codec_client.get_workflow_handle(workflow_id).fetch_history()
    assert history.events[-1].HasField("workflow_execution_failed_event_attributes")
    cli_dump = await asyncio.to_thread(show, codec_client, workflow_id)
    for dump in (cli_dump, history.to_json()):
        seen = readable(dump)
        assert workflow_id in seen
        assert marker not in seen
        assert "validation error" not in seen


async def test_a_delivery_s_logs_hold_no_secret(
    client: Client,
    settings: Settings,
    worker: None,
    caplog: pytest.LogCaptureFixture,
    publisher: EndpointPublisher,
) -> None:
    caplog.set_level(logging.DEBUG)
    # A retry, a success, a dead letter: every code path that logs.
    async with Receiver(scripted(Respond(500), Respond(200), then=Respond(410))) as rx:
        for _ in range(2):
            delivery_id = await publisher.publish(
                endpoint_id=unique("ep_logs"),
                url=rx.url + "/hook",
                event_type="history.test",
                data={"note": "logs"},
                retry=fast(0, 0.1),
            )
            handle = client.get_workflow_handle_for(WebhookDelivery.run, delivery_id)
            async with asyncio.timeout(BOUND_SECONDS):
                await handle.result()
    assert len(rx.requests) == 3
    records = caplog.records
    # The capture works: each request was logged (httpx), and so was the dead letter.
    assert sum("HTTP Request: POST" in r.getMessage() for r in records) == 3
    logged = "\n".join(f"{r.getMessage()} {r.args!r} {vars(r)!r}" for r in records)
    for hidden in SECRET_FORMS:
        assert hidden not in logged
