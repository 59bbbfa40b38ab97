"""`webhooks dev`: the whole product on one machine, and a demo a newcomer can watch.

The demo receiver fails the first attempts (a 500, a 503 with Retry-After, a dropped
connection) and then accepts, verifying each signature, so the retry loop is visible in
the terminal, in `webhooks status`, and in the Temporal Web UI.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from temporalio.client import Client

from webhooks.config import Settings
from webhooks.core.models import DeliveryResult, RetrySchedule
from webhooks.core.roles import Role
from webhooks.core.signing import sign
from webhooks.dev.devserver import (
    dev_server,
    ensure_dev_codec,
    ensure_dev_console,
    ensure_dev_secret_keys,
)
from webhooks.dev.receiver import Behavior, Drop, ReceivedRequest, Receiver, Respond, scripted
from webhooks.publisher import WebhookPublisher, connect
from webhooks.registry.errors import EndpointNotFoundError
from webhooks.registry.models import EndpointChanges, EndpointState, NewEndpoint
from webhooks.registry.service import EndpointRegistry, open_registry
from webhooks.server.app import serve_console
from webhooks.server.auth import hash_password
from webhooks.server.settings import ConsoleSettings, UserConfig

DEMO_SCHEDULE = RetrySchedule(
    schedule_seconds=[0, 2, 4, 8, 16], jitter=0.2, throttled_min_seconds=0
)


DEMO_ENDPOINT = "ep_demo"
DEMO_ACCOUNT = "acct_demo"
DEMO_DESCRIPTION = "the `webhooks dev --demo` receiver"


def signature_ok(keys: Sequence[bytes], request: ReceivedRequest) -> bool:
    """Check a request the way a customer would (any one `v1,` entry may match)."""
    h = request.headers
    offered = set(h.get("webhook-signature", "").split())
    timestamp = int(h.get("webhook-timestamp", "0"))
    return any(
        sign(key, h.get("webhook-id", ""), timestamp, request.body) in offered for key in keys
    )


def dev_settings(state_dir: Path, port: int, **extra: Any) -> Settings:
    """The dev stack's settings: the registry in the state folder, sealed with a local key
    ring generated there (unless the environment names its own), private URLs allowed."""
    keys: dict[str, Any] = {}
    if not (os.environ.get("WEBHOOKS_SECRET_KEYS") or os.environ.get("WEBHOOKS_SECRET_KEYS_FILE")):
        keys["secret_keys_file"] = ensure_dev_secret_keys(state_dir)
    return Settings(
        temporal_address=f"127.0.0.1:{port}",
        state_dir=state_dir,
        allow_private_destinations=True,
        **keys,
        **extra,
    )


async def run_dev(
    *,
    state_dir: Path,
    port: int,
    ui_port: int,
    demo: bool,
    console: Console,
    encrypt: bool = False,
    console_port: int = 8080,
) -> None:
    from webhooks.cli.output import serve_until_stopped
    from worker import run_worker

    codec: dict[str, Any] = {}
    ui_codec: list[str] = []
    if encrypt:
        # A generated local key; the UI decodes through the console, which holds it.
        codec = {"codec_keys": None, "codec_keys_file": ensure_dev_codec(state_dir)}
        ui_codec = ["--ui-codec-endpoint", f"http://127.0.0.1:{console_port}/codec"]
    password, session_key = ensure_dev_console(state_dir)
    console_settings = ConsoleSettings(
        users=[UserConfig(name="admin", password_hash=hash_password(password), role=Role.ADMIN)],
        session_secret=session_key,
        codec_origins=(f"http://localhost:{ui_port}", f"http://127.0.0.1:{ui_port}"),
    )
    settings = dev_settings(state_dir, port, **codec)
    async with (
        dev_server(state_dir, port=port, ui_port=ui_port, extra=ui_codec) as address,
        open_registry(settings, migrate=True) as registry,
    ):
        client = await connect(settings)
        keys_env = (
            f"export WEBHOOKS_SECRET_KEYS_FILE={settings.secret_keys_file}"
            if settings.secret_keys_file
            else "WEBHOOKS_SECRET_KEYS as set here"
        )
        console.print(
            f"Temporal dev server on [bold]{address}[/] (SQLite {state_dir / 'temporal.db'})\n"
            f"Web UI: [bold]http://127.0.0.1:{ui_port}[/]\n"
            f"endpoint registry: {registry.store.engine.url.render_as_string()}\n"
            f"worker on task queue {settings.task_queue!r}; Ctrl-C stops everything\n"
            f"other shells need: {keys_env}; export WEBHOOKS_ALLOW_PRIVATE_DESTINATIONS=true",
            highlight=False,
        )
        if encrypt:
            console.print(
                f"history encrypted (key file {settings.codec_keys_file}); the Web UI decodes "
                f"through the console's /codec (sign in to the console first)\n"
                f"other shells need: export WEBHOOKS_CODEC_KEYS_FILE={settings.codec_keys_file}",
                highlight=False,
            )

        async def serve(stop: asyncio.Event) -> None:
            worker = asyncio.create_task(run_worker(client, settings, stop))
            ready = asyncio.Event()

            def announce(message: str) -> None:
                console.print(
                    f"{message}  (user admin, password in {state_dir / 'console-password'})",
                    highlight=False,
                )
                ready.set()

            web = asyncio.create_task(
                serve_console(
                    settings,
                    console_settings,
                    stop,
                    port=console_port,
                    announce=announce,
                    client=client,
                )
            )
            await asyncio.wait(
                {web, asyncio.ensure_future(ready.wait())}, return_when=asyncio.FIRST_COMPLETED
            )
            if web.done():
                await web  # could not start: say why
            if demo:
                await _demo(client, settings.task_queue, registry, console, stop)
            await asyncio.gather(worker, web)

        await serve_until_stopped(serve)
    console.print("stopped", highlight=False)


async def demo_endpoint(registry: EndpointRegistry, url: str) -> str:
    """The demo's endpoint `ep_demo` in the registry: created on the first run, pointed at
    this run's receiver after that (its secret stays)."""
    try:
        endpoint = await registry.get(DEMO_ENDPOINT)
    except EndpointNotFoundError:
        new = NewEndpoint(
            id=DEMO_ENDPOINT, account_id=DEMO_ACCOUNT, url=url, description=DEMO_DESCRIPTION
        )
        await registry.create(new, actor="webhooks dev")
        return DEMO_ENDPOINT
    await registry.update(endpoint.id, EndpointChanges(url=url), actor="webhooks dev")
    if endpoint.state is EndpointState.DISABLED:
        await registry.enable(endpoint.id, actor="webhooks dev")
    return DEMO_ENDPOINT


async def _demo(
    client: Client,
    task_queue: str,
    registry: EndpointRegistry,
    console: Console,
    stop: asyncio.Event,
) -> None:
    publisher = WebhookPublisher(client, registry=registry, task_queue=task_queue)
    keys: list[bytes] = []

    def show(request: ReceivedRequest, behavior: Behavior) -> None:
        answer = f"answer {behavior.status}" if isinstance(behavior, Respond) else "drop connection"
        verified = "signature ok" if signature_ok(keys, request) else "[red]BAD SIGNATURE[/]"
        console.print(
            f"receiver got {request.headers.get('webhook-id')} "
            f"t={request.headers.get('webhook-timestamp')} {verified} -> {answer}",
            highlight=False,
        )

    flaky = scripted(
        Respond(500, b"boom"),
        Respond(503, headers={"retry-after": "3"}),
        Drop(),
        then=Respond(200, b"ok"),
    )
    async with Receiver(flaky, on_request=show) as receiver:
        endpoint_id = await demo_endpoint(registry, receiver.url + "/webhooks")
        resolved = await registry.resolve(endpoint_id)
        assert resolved is not None
        keys.extend(resolved.keys)  # what the customer holds, to verify as they would
        event_id = "evt_demo_" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        delivery_id = await publisher.publish(
            endpoint_id=endpoint_id,
            event_type="stream.settled",
            data={
                "stream_id": "str_demo",
                "settlement_id": "set_" + event_id.removeprefix("evt_"),
                "amount": "12.50",
                "currency": "EUR",
                "status": "settled",
                "settled_at": datetime.now(UTC),
            },
            event_id=event_id,
            retry=DEMO_SCHEDULE,
        )
        console.print(
            f"published {event_id} as delivery [bold]{delivery_id}[/] to endpoint "
            f"{endpoint_id} ({receiver.url})\n"
            f"watch it: webhooks status {delivery_id}   (or the Web UI)",
            highlight=False,
        )
        outcome = asyncio.ensure_future(
            client.get_workflow_handle(delivery_id, result_type=DeliveryResult).result()
        )
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({outcome, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if outcome.done():
            result = outcome.result()
            console.print(
                f"[bold]{result.state.value}[/] after {result.attempts} attempts; "
                "Ctrl-C stops everything",
                highlight=False,
            )
        else:
            outcome.cancel()
        await stopped
