"""`webhooks dev`: the whole product on one machine, and a demo a newcomer can watch.

The demo receiver fails the first attempts (a 500, a 503 with Retry-After, a dropped
connection) and then accepts, verifying each signature, so the retry loop is visible in
the terminal, in `webhooks status`, and in the Temporal Web UI.
"""

from __future__ import annotations

import asyncio
import os
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
    ensure_dev_secrets,
)
from webhooks.dev.receiver import Behavior, Drop, ReceivedRequest, Receiver, Respond, scripted
from webhooks.publisher import WebhookPublisher, connect
from webhooks.secrets import FileSecretStore
from webhooks.server.app import serve_console
from webhooks.server.auth import hash_password
from webhooks.server.settings import ConsoleSettings, UserConfig

DEMO_SCHEDULE = RetrySchedule(
    schedule_seconds=[0, 2, 4, 8, 16], jitter=0.2, throttled_min_seconds=0
)


def signature_ok(store: FileSecretStore, request: ReceivedRequest) -> bool:
    """Check a request the way a customer would (any one `v1,` entry may match)."""
    h = request.headers
    offered = set(h.get("webhook-signature", "").split())
    timestamp = int(h.get("webhook-timestamp", "0"))
    return any(
        sign(key, h.get("webhook-id", ""), timestamp, request.body) in offered
        for key in store.keys("default")
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

    secrets_file = Path(os.environ.get("WEBHOOKS_SECRETS_FILE") or ensure_dev_secrets(state_dir))
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
    settings = Settings(
        temporal_address=f"127.0.0.1:{port}",
        state_dir=state_dir,
        secrets_file=secrets_file,
        allow_private_destinations=True,
        **codec,
    )
    async with dev_server(state_dir, port=port, ui_port=ui_port, extra=ui_codec) as address:
        client = await connect(settings)
        console.print(
            f"Temporal dev server on [bold]{address}[/] (SQLite {state_dir / 'temporal.db'})\n"
            f"Web UI: [bold]http://127.0.0.1:{ui_port}[/]   secrets: {secrets_file}\n"
            f"worker on task queue {settings.task_queue!r}; Ctrl-C stops everything",
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
                store = settings.secret_store()
                assert store is not None
                await _demo(client, settings.task_queue, store, console, stop)
            await asyncio.gather(worker, web)

        await serve_until_stopped(serve)
    console.print("stopped", highlight=False)


async def _demo(
    client: Client, task_queue: str, store: FileSecretStore, console: Console, stop: asyncio.Event
) -> None:
    publisher = WebhookPublisher(client, task_queue=task_queue)

    def show(request: ReceivedRequest, behavior: Behavior) -> None:
        answer = f"answer {behavior.status}" if isinstance(behavior, Respond) else "drop connection"
        verified = "signature ok" if signature_ok(store, request) else "[red]BAD SIGNATURE[/]"
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
        event_id = "evt_demo_" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        delivery_id = await publisher.publish(
            endpoint_id="ep_demo",
            url=receiver.url + "/webhooks",
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
            f"published {event_id} as delivery [bold]{delivery_id}[/] to {receiver.url}\n"
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
