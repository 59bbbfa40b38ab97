"""`webhooks`: run the product, publish events, and inspect or nudge deliveries.

Thin by design: each command parses its arguments, calls the client or Temporal, and
renders the answer as a table or, with `--json`, as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from temporalio.client import Client

from webhooks.cli.circuit import circuit_app
from webhooks.cli.db import db_app
from webhooks.cli.dlq import dlq_app
from webhooks.cli.endpoint import endpoint_app
from webhooks.cli.output import (
    CliError,
    JsonFlag,
    attempt_table,
    ensure_exists,
    exit_now,
    out,
    parse_duration,
    print_json,
    run,
    serve_until_stopped,
    temporal_client,
    when,
)
from webhooks.config import Settings
from webhooks.core.models import Attempt, DeliveryRequest, DeliveryStatus, RetrySchedule
from webhooks.logs import configure_logging
from webhooks.ops.gauges import BacklogGauges
from webhooks.publisher import WebhookPublisher, build_request

app = typer.Typer(
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, help=__doc__
)


@app.callback()
def _configure() -> None:
    # Logs (WEBHOOKS_LOG_FORMAT, WEBHOOKS_LOG_LEVEL) go to stderr; stdout stays the output.
    with contextlib.suppress(ValidationError):  # the command itself reports bad settings
        configure_logging(Settings())


app.add_typer(dlq_app, name="dlq")
app.add_typer(circuit_app, name="circuit")
app.add_typer(endpoint_app, name="endpoint")
app.add_typer(db_app, name="db")


@app.command()
def publish(
    endpoint_id: Annotated[str, typer.Option(help="The customer endpoint's id.")],
    url: Annotated[str, typer.Option(help="Where to POST (http or https).")],
    event_type: Annotated[str, typer.Option(help="e.g. stream.settled")],
    data: Annotated[str, typer.Option(help="The event's data: a JSON object.")],
    event_id: Annotated[
        str | None, typer.Option(help="Stable id; republishing it is a no-op.")
    ] = None,
    secret_ref: Annotated[str, typer.Option(help="Which secret signs it.")] = "default",
    max_attempts: Annotated[int | None, typer.Option(min=1, max=100)] = None,
    schedule: Annotated[
        str | None, typer.Option(help="Waits before each attempt, e.g. 0,1s,5s,5m.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Start a delivery and print its delivery id."""

    async def main() -> str:
        try:
            payload = json.loads(data)
        except json.JSONDecodeError as e:
            raise CliError(f"--data is not JSON: {e.msg} at position {e.pos}") from None
        retry = None
        if schedule or max_attempts:
            delays = [parse_duration(s) for s in schedule.split(",")] if schedule else None
            retry = RetrySchedule(
                max_attempts=max_attempts,
                **({"schedule_seconds": delays} if delays else {}),
            )
        settings = Settings()
        request = build_request(
            endpoint_id=endpoint_id,
            url=url,
            event_type=event_type,
            data=payload,
            event_id=event_id,
            secret_ref=secret_ref,
            retry=retry,
            secrets=settings.secret_store(),
            require_https=settings.require_https,
        )
        # Validated before connecting: bad input never starts anything.
        publisher = WebhookPublisher(
            await temporal_client(settings), task_queue=settings.task_queue
        )
        return await publisher.start(request)

    delivery_id = run(main())
    if as_json:
        print_json({"delivery_id": delivery_id})
    else:
        out.print(delivery_id, highlight=False)


@app.command()
def status(
    delivery_id: Annotated[str, typer.Argument(help="The delivery id (= workflow id).")],
    as_json: JsonFlag = False,
) -> None:
    """Show a delivery's state and its attempt table."""

    async def main() -> tuple[DeliveryStatus, list[Attempt]]:
        handle = (await temporal_client(Settings())).get_workflow_handle(delivery_id)
        await ensure_exists(handle, "delivery")
        summary = await handle.query("status", result_type=DeliveryStatus)
        attempts = await handle.query("attempts", result_type=list[Attempt])
        return summary, attempts

    summary, attempts = run(main())
    if as_json:
        print_json({"status": summary.model_dump(mode="json"), "attempts": attempts})
        return
    out.print(
        f"[bold]{summary.delivery_id}[/]  {summary.event_type} -> {summary.endpoint_id}  "
        f"[bold]{summary.state.value}[/] after {summary.attempts} attempt(s)"
        + (f", next at {when(summary.next_attempt_at)}" if summary.next_attempt_at else "")
        + (f", reason {summary.dead_letter_reason.value}" if summary.dead_letter_reason else ""),
        highlight=False,
    )
    out.print(attempt_table(attempts))


@app.command()
def retry(
    delivery_id: Annotated[str, typer.Argument(help="The delivery id (= workflow id).")],
    as_json: JsonFlag = False,
) -> None:
    """Cut a delivery's current backoff wait short (signal `retry_now`)."""

    async def main() -> None:
        handle = (await temporal_client(Settings())).get_workflow_handle(delivery_id)
        await ensure_exists(handle, "delivery")
        await handle.signal("retry_now")

    run(main())
    if as_json:
        print_json({"delivery_id": delivery_id, "signalled": "retry_now"})
    else:
        out.print(f"signalled retry_now to {delivery_id}", highlight=False)


async def serve_worker(
    client: Client,
    settings: Settings,
    stop: asyncio.Event,
    announce: Callable[[], None] | None = None,
) -> None:
    """Serve until `stop`: the worker, and the backlog gauges when this worker is the one
    to refresh them. `announce` runs once the worker polls."""
    from worker import running_worker

    async with running_worker(client, settings):
        if announce is not None:
            announce()
        if settings.gauges_interval_seconds:
            gauges = BacklogGauges(client, task_queue=settings.task_queue)
            await gauges.run(settings.gauges_interval_seconds, stop)
        else:
            await stop.wait()


@app.command()
def worker() -> None:
    """Run a worker against TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE until Ctrl-C."""

    async def main() -> None:
        settings = Settings()
        client = await temporal_client(settings)

        def announce() -> None:
            # Printed once polling: deploy scripts and tests wait for this line.
            out.print(
                f"worker polling on {settings.temporal_address} namespace "
                f"{settings.temporal_namespace}, task queue {settings.task_queue!r}; "
                "Ctrl-C (SIGTERM) stops it after in-flight sends finish",
                highlight=False,
            )

        await serve_until_stopped(lambda stop: serve_worker(client, settings, stop, announce))

    run(main())


@app.command()
def dev(
    demo: Annotated[
        bool, typer.Option(help="Also run a flaky local receiver and publish a demo event.")
    ] = False,
    state_dir: Annotated[
        Path, typer.Option(help="Where the SQLite file, secrets and logs live.")
    ] = Path(".webhooks"),
    port: Annotated[int, typer.Option(help="Temporal gRPC port.")] = 7233,
    ui_port: Annotated[int, typer.Option(help="Temporal Web UI port.")] = 8233,
    encrypt: Annotated[
        bool, typer.Option(help="Encrypt history with a generated local key; UI decodes it.")
    ] = False,
    codec_port: Annotated[int, typer.Option(help="Codec server port (with --encrypt).")] = 8081,
) -> None:
    """Run the Temporal dev server (SQLite, Web UI) and a worker; Ctrl-C stops both."""
    from webhooks.dev.demo import run_dev

    run(
        run_dev(
            state_dir=state_dir,
            port=port,
            ui_port=ui_port,
            demo=demo,
            console=out,
            encrypt=encrypt,
            codec_port=codec_port,
        )
    )


@app.command("codec-server")
def codec_server(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8081,
    origin: Annotated[
        list[str] | None, typer.Option(help="Web UI origin allowed by CORS (repeatable).")
    ] = None,
) -> None:
    """Decode encrypted payloads for the Temporal UI/CLI (needs WEBHOOKS_CODEC_SERVER_TOKEN)."""
    from webhooks.server.codec_server import DEFAULT_ORIGINS, serve_codec

    def announce(message: str) -> None:
        out.print(message, highlight=False)

    async def main() -> None:
        settings, origins = Settings(), origin or DEFAULT_ORIGINS
        await serve_until_stopped(
            lambda stop: serve_codec(
                settings, stop, host=host, port=port, origins=origins, announce=announce
            )
        )

    run(main())


@app.command()
def schema() -> None:
    """Print the JSON schema of the `WebhookDelivery` input (for non-Python publishers)."""
    print(json.dumps(DeliveryRequest.model_json_schema(), indent=2))


def main() -> None:
    """The `webhooks` entry point: exit with the command's own code, and never let the
    SDK's teardown race change it (see `exit_now`)."""
    try:
        app()
    except SystemExit as stop:
        code = stop.code
    else:
        code = 0
    exit_now(code if isinstance(code, int) else (0 if code is None else 1))
