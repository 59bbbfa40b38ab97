"""`webhooks`: run the product, publish events, and inspect or nudge deliveries.

Thin by design: each command parses its arguments, calls the client or Temporal, and
renders the answer as a table or, with `--json`, as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from temporalio.client import Client

from webhooks.cli.circuit import circuit_app
from webhooks.cli.console import console_app
from webhooks.cli.db import db_app
from webhooks.cli.dlq import dlq_app
from webhooks.cli.endpoint import endpoint_app
from webhooks.cli.output import (
    CliError,
    JsonFlag,
    attempt_table,
    ensure_exists,
    err,
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
from webhooks.publisher import Published, PublishOutcome, WebhookPublisher
from webhooks.registry.service import open_registry

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
app.add_typer(console_app, name="console")
app.add_typer(endpoint_app, name="endpoint")
app.add_typer(db_app, name="db")


@app.command()
def publish(
    event_type: Annotated[str, typer.Option(help="e.g. stream.settled")],
    data: Annotated[str, typer.Option(help="The event's data: a JSON object.")],
    endpoint_id: Annotated[
        str | None, typer.Option(help="Deliver to this endpoint of the registry.")
    ] = None,
    account_id: Annotated[
        str | None,
        typer.Option(
            help="Deliver to every enabled endpoint of this account that wants it "
            "(with --endpoint-id: only check that the endpoint is this account's)."
        ),
    ] = None,
    event_id: Annotated[
        str | None, typer.Option(help="Stable id; republishing it is a no-op.")
    ] = None,
    max_attempts: Annotated[int | None, typer.Option(min=1, max=100)] = None,
    schedule: Annotated[
        str | None, typer.Option(help="Waits before each attempt, e.g. 0,1s,5s,5m.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Start deliveries and print their delivery ids, one per line.

    An event id published before is not started again; stderr says so with the existing
    delivery's state (running, delivered, dead_lettered) and the exit code is 0. The same
    event id with different data is refused (exit code 2)."""

    async def main() -> list[Published]:
        if endpoint_id is None and account_id is None:
            raise CliError(
                "give --endpoint-id (with --account-id: it must be theirs) or --account-id"
            )
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
        async with open_registry(settings, keys=False) as registry:
            publisher = WebhookPublisher(
                await temporal_client(settings), registry=registry, task_queue=settings.task_queue
            )
            if endpoint_id is not None:
                one = await publisher.publish_detailed(
                    endpoint_id=endpoint_id,
                    account_id=account_id,
                    event_type=event_type,
                    data=payload,
                    event_id=event_id,
                    retry=retry,
                )
                return [one]
            assert account_id is not None
            return await publisher.publish_event_detailed(
                account_id=account_id,
                event_type=event_type,
                data=payload,
                event_id=event_id or f"evt_{uuid.uuid4().hex}",
                retry=retry,
            )

    published = run(main())
    for p in published:
        if p.outcome is PublishOutcome.ALREADY_EXISTS:
            state = p.state.value if p.state else "unknown"
            err.print(
                f"{p.delivery_id}: already published, {state} (nothing new started)",
                highlight=False,
            )
    if as_json:
        rows = [p.model_dump(mode="json") for p in published]
        print_json(rows[0] if endpoint_id is not None else {"deliveries": rows})
        return
    if not published:
        err.print(
            f"no enabled endpoint of {account_id} subscribes to {event_type}", highlight=False
        )
    for p in published:
        out.print(p.delivery_id, highlight=False)


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
    from worker import SHUTDOWN_MARGIN_SECONDS, graceful_shutdown_timeout

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

        # A worker whose polls hang (say, on a server that restarted) still leaves in time.
        limit = graceful_shutdown_timeout(settings).total_seconds() + SHUTDOWN_MARGIN_SECONDS
        await serve_until_stopped(
            lambda stop: serve_worker(client, settings, stop, announce), deadline=limit
        )

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
    console_port: Annotated[int, typer.Option(help="Console (and codec endpoint) port.")] = 8080,
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
            console_port=console_port,
        )
    )


@app.command()
def schema() -> None:
    """Print the JSON schema of the `WebhookDelivery` input (docs/schema/delivery-request.json)."""
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
