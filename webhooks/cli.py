"""`webhooks`: run the product, publish events, and inspect or nudge deliveries.

Thin by design: each command parses its arguments, calls the client or Temporal, and
renders the answer as a table or, with `--json`, as JSON.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, TypeAdapter, ValidationError
from rich.console import Console
from rich.table import Table
from temporalio.client import Client, RPCError, WorkflowHandle
from temporalio.service import RPCStatusCode

from webhooks.client import WebhookPublisher, build_request, connect
from webhooks.config import Settings
from webhooks.models import Attempt, DeliveryStatus, RetrySchedule
from webhooks.secrets import SecretStoreError, UnknownSecretRefError

app = typer.Typer(
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, help=__doc__
)
out = Console()
err = Console(stderr=True)
T = TypeVar("T")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit code 2."""


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine, turning expected failures into one clear line."""
    try:
        return asyncio.run(coro)
    except ValidationError as e:
        lines = [f"  {'.'.join(map(str, x['loc'])) or 'input'}: {x['msg']}" for x in e.errors()]
        err.print("[red]error:[/] invalid input\n" + "\n".join(lines), highlight=False)
    except (CliError, ValueError, UnknownSecretRefError, SecretStoreError) as e:
        err.print(f"[red]error:[/] {e}", highlight=False)
    except RPCError as e:
        err.print(f"[red]error:[/] Temporal said: {e.message}", highlight=False)
    except RuntimeError as e:
        # temporalio raises RuntimeError when it cannot connect.
        err.print(f"[red]error:[/] {e}", highlight=False)
    raise typer.Exit(2)


def print_json(value: Any) -> None:
    if isinstance(value, BaseModel):
        text = value.model_dump_json(indent=2)
    else:
        text = json.dumps(TypeAdapter(Any).dump_python(value, mode="json"), indent=2)
    out.print_json(text)


def parse_duration(text: str) -> float:
    """`0`, `500ms`, `5s`, `5m`, `2h`, `1d` -> seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip()
    for suffix in ("ms", "s", "m", "h", "d"):
        if text.endswith(suffix):
            number, scale = text[: -len(suffix)], units[suffix]
            break
    else:
        number, scale = text, 1
    try:
        value = float(number) * scale
    except ValueError:
        raise CliError(f"not a duration: {text!r} (use e.g. 0, 500ms, 5s, 5m, 2h, 1d)") from None
    if value < 0:
        raise CliError(f"a duration must not be negative: {text!r}")
    return value


async def _client(settings: Settings) -> Client:
    try:
        return await connect(settings)
    except RuntimeError as e:
        raise CliError(
            f"cannot reach Temporal at {settings.temporal_address} "
            f"(namespace {settings.temporal_namespace}); set TEMPORAL_ADDRESS or run "
            f"`webhooks dev`. ({e})"
        ) from None


async def _describe_or_fail(handle: WorkflowHandle[Any, Any], what: str) -> None:
    try:
        await handle.describe()
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise CliError(f"no {what} with id {handle.id!r}") from None
        raise


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
        )
        # Validated before connecting: bad input never starts anything.
        publisher = WebhookPublisher(await _client(settings), task_queue=settings.task_queue)
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
        handle = (await _client(Settings())).get_workflow_handle(delivery_id)
        await _describe_or_fail(handle, "delivery")
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
        + (f", next at {_when(summary.next_attempt_at)}" if summary.next_attempt_at else "")
        + (f", reason {summary.dead_letter_reason.value}" if summary.dead_letter_reason else ""),
        highlight=False,
    )
    out.print(attempt_table(attempts))


def attempt_table(attempts: list[Attempt]) -> Table:
    table = Table("#", "run", "started", "ms", "outcome", "status", "error", "next attempt")
    for a in attempts:
        table.add_row(
            str(a.number),
            str(a.generation),
            _when(a.started_at),
            f"{a.duration_ms:.0f}",
            a.outcome.value,
            str(a.status_code or ""),
            f"{a.error_kind.value}: {a.error}" if a.error_kind else "",
            _when(a.next_attempt_at) if a.next_attempt_at else "",
        )
    return table


def _when(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


@app.command()
def retry(
    delivery_id: Annotated[str, typer.Argument(help="The delivery id (= workflow id).")],
    as_json: JsonFlag = False,
) -> None:
    """Cut a delivery's current backoff wait short (signal `retry_now`)."""

    async def main() -> None:
        handle = (await _client(Settings())).get_workflow_handle(delivery_id)
        await _describe_or_fail(handle, "delivery")
        await handle.signal("retry_now")

    run(main())
    if as_json:
        print_json({"delivery_id": delivery_id, "signalled": "retry_now"})
    else:
        out.print(f"signalled retry_now to {delivery_id}", highlight=False)


async def serve_until_stopped(serve: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `serve(stop)` until SIGINT or SIGTERM sets `stop`."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await serve(stop)


@app.command()
def worker() -> None:
    """Run a worker against TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE until Ctrl-C."""
    from worker import run_worker

    async def main() -> None:
        settings = Settings()
        client = await _client(settings)
        out.print(
            f"worker on {settings.temporal_address} namespace {settings.temporal_namespace}, "
            f"task queue {settings.task_queue!r}; Ctrl-C stops it",
            highlight=False,
        )
        await serve_until_stopped(lambda stop: run_worker(client, settings, stop))

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
) -> None:
    """Run the Temporal dev server (SQLite, Web UI) and a worker; Ctrl-C stops both."""
    from webhooks.demo import run_dev

    run(run_dev(state_dir=state_dir, port=port, ui_port=ui_port, demo=demo, console=out))


def main() -> None:
    app()
