"""`webhooks dlq`: list, count, show, redeliver and discard dead letters."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.progress import Progress
from rich.table import Table
from temporalio.client import Client, RPCError

from webhooks.cli.output import (
    CliError,
    JsonFlag,
    attempt_table,
    ensure_exists,
    err,
    out,
    print_json,
    run,
    temporal_client,
    when,
)
from webhooks.config import Settings
from webhooks.core.bulk import BulkAction, BulkFilter, BulkProgress, BulkRequest
from webhooks.core.models import (
    DeadLetterReason,
    DeadLetterState,
    DeadLetterView,
    DiscardRequest,
    RedeliverRequest,
)
from webhooks.ops.bulk import follow_job, start_bulk
from webhooks.ops.dead_letters import (
    DeadLetterFilter,
    DeadLetterRow,
    act_on,
    count_by_reason,
    count_open_by_reason,
    list_dead_letters,
)
from webhooks.ops.errors import ConflictError, NotFoundError

dlq_app = typer.Typer(no_args_is_help=True, help="The dead-letter queue.")

Endpoint = Annotated[str | None, typer.Option("--endpoint", help="Only this endpoint id.")]
EventType = Annotated[str | None, typer.Option(help="Only this event type.")]
Reason = Annotated[DeadLetterReason | None, typer.Option(help="Only this dead-letter reason.")]
Since = Annotated[
    datetime | None, typer.Option(help="Dead-lettered at or after (ISO 8601, UTC if naive).")
]
Until = Annotated[datetime | None, typer.Option(help="Dead-lettered before (ISO 8601).")]


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _filter(
    endpoint: str | None,
    event_type: str | None,
    reason: DeadLetterReason | None,
    since: datetime | None,
    until: datetime | None,
    state: DeadLetterState | None = DeadLetterState.OPEN,
) -> DeadLetterFilter:
    return DeadLetterFilter(
        endpoint_id=endpoint,
        event_type=event_type,
        reason=reason,
        since=_utc(since),
        until=_utc(until),
        state=state,
    )


def _rows_table(rows: list[DeadLetterRow]) -> Table:
    table = Table("dead letter", "endpoint", "event type", "reason", "state", "dead-lettered at")
    for row in rows:
        table.add_row(
            row.dead_letter_id,
            row.endpoint_id or "",
            row.event_type or "",
            row.reason or "",
            row.state or "",
            when(row.dead_lettered_at),
        )
    return table


@dlq_app.command("list")
def list_(
    endpoint: Endpoint = None,
    event_type: EventType = None,
    reason: Reason = None,
    since: Since = None,
    until: Until = None,
    all_states: Annotated[
        bool, typer.Option("--all", help="Include redelivered, discarded and expired ones.")
    ] = False,
    limit: Annotated[int, typer.Option(min=1)] = 1000,
    as_json: JsonFlag = False,
) -> None:
    """List dead letters (open ones by default) with counts by reason."""
    state = None if all_states else DeadLetterState.OPEN
    where = _filter(endpoint, event_type, reason, since, until, state)

    async def main() -> list[DeadLetterRow]:
        return await list_dead_letters(await temporal_client(Settings()), where, limit)

    rows = run(main())
    counts = count_by_reason(rows)
    if as_json:
        print_json({"query": where.query(), "counts": counts, "dead_letters": rows})
        return
    out.print(_rows_table(rows))
    summary = ", ".join(f"{reason}: {n}" for reason, n in counts.items()) or "none"
    out.print(f"{len(rows)} dead letter(s) — {summary}", highlight=False)


@dlq_app.command()
def count(
    endpoint: Endpoint = None,
    event_type: EventType = None,
    as_json: JsonFlag = False,
) -> None:
    """Count open dead letters per reason (server-side; cheap enough to poll for alerts)."""

    async def main() -> dict[str, int]:
        client = await temporal_client(Settings())
        return await count_open_by_reason(client, _filter(endpoint, event_type, None, None, None))

    counts = run(main())
    if as_json:
        print_json({"open": counts, "total": sum(counts.values())})
        return
    table = Table("reason", "open")
    for reason, n in counts.items():
        table.add_row(reason, str(n))
    out.print(table)


@dlq_app.command()
def show(
    dead_letter_id: Annotated[str, typer.Argument(help="The dead letter's workflow id.")],
    as_json: JsonFlag = False,
) -> None:
    """Show one dead letter: the request, why, and every attempt."""

    async def main() -> DeadLetterView:
        handle = (await temporal_client(Settings())).get_workflow_handle(dead_letter_id)
        await ensure_exists(handle, "dead letter")
        view: DeadLetterView = await handle.query("entry", result_type=DeadLetterView)
        return view

    view = run(main())
    if as_json:
        print_json(view)
        return
    entry, request = view.entry, view.entry.request
    out.print(
        f"[bold]{entry.dead_letter_id}[/] ({view.state.value})  reason [bold]{entry.reason.value}"
        f"[/]{f' ({entry.detail})' if entry.detail else ''}, dead-lettered "
        f"{when(entry.dead_lettered_at)}\n"
        f"delivery {request.delivery_id}: {request.event_type} -> {request.endpoint_id} "
        f"{request.url or '(URL from the registry)'}  event {request.event_id}, "
        f"run {request.generation}",
        highlight=False,
    )
    if view.acted_by:
        out.print(
            f"{view.state.value} by {view.acted_by} at {when(view.acted_at)}"
            + (f" -> {view.redelivery_id}" if view.redelivery_id else "")
            + (f": {view.note}" if view.note else ""),
            highlight=False,
        )
    out.print(attempt_table(entry.attempts))


def _act(
    signal: str,
    arg: RedeliverRequest | DiscardRequest,
    dead_letter_id: str | None,
    where: DeadLetterFilter,
    *,
    per_second: float,
    dry_run: bool,
    as_json: bool,
    detach: bool = False,
) -> None:
    """One dead letter by id (signalled at once), or every open one that matches the
    filters: the durable bulk job, as the console runs it."""
    if dead_letter_id is None and where == DeadLetterFilter():
        run(_refuse("name a dead letter id, or at least one filter such as --endpoint"))
    if dry_run:
        _dry_run(signal, dead_letter_id, where, as_json=as_json)
    elif dead_letter_id is None:
        _run_job(signal, arg, where, per_second=per_second, as_json=as_json, detach=detach)
    else:
        _act_on_one(signal, arg, dead_letter_id, as_json=as_json)


async def _refuse(message: str) -> None:
    """Inside `run`, so that it prints as a usage error (exit 2), not a traceback."""
    raise CliError(message)


def _dry_run(
    signal: str, dead_letter_id: str | None, where: DeadLetterFilter, *, as_json: bool
) -> None:
    async def main() -> list[str]:
        return await _targets(await temporal_client(Settings()), dead_letter_id, where)

    ids = run(main())
    if as_json:
        print_json({"dry_run": True, "would_signal": ids})
        return
    out.print(f"dry run: would {signal} {len(ids)} dead letter(s)", highlight=False)
    for workflow_id in ids:
        out.print(f"  {workflow_id}", highlight=False)


def _act_on_one(
    signal: str, arg: RedeliverRequest | DiscardRequest, dead_letter_id: str, *, as_json: bool
) -> None:
    """The console's single action (`act_on`); a closed one is "already closed", not an
    error, so that running the same command twice is harmless."""

    async def main() -> tuple[str, str]:
        client = await temporal_client(Settings())
        try:
            await act_on(client, dead_letter_id, arg)
        except NotFoundError as e:
            raise CliError(str(e)) from None
        except ConflictError:
            return "already_closed", ""
        except RPCError as e:
            return "failed", e.message or repr(e)
        return "signalled", ""

    outcome, message = run(main())
    summary: dict[str, Any] = {"signalled": [], "already_closed": [], "failed": {}}
    summary[outcome] = {dead_letter_id: message} if outcome == "failed" else [dead_letter_id]
    if as_json:
        print_json(summary)
    else:
        out.print(
            f"{signal}: {len(summary['signalled'])} signalled, "
            f"{len(summary['already_closed'])} already closed, {len(summary['failed'])} failed",
            highlight=False,
        )
        if message:
            err.print(f"  {dead_letter_id}: {message}", highlight=False)
    if outcome == "failed":
        raise typer.Exit(1)


def _run_job(
    signal: str,
    arg: RedeliverRequest | DiscardRequest,
    where: DeadLetterFilter,
    *,
    per_second: float,
    as_json: bool,
    detach: bool,
) -> None:
    """Start a `BulkDeadLetterAction` job (the console's bulk action) and follow it."""

    async def main() -> tuple[str, BulkProgress | None]:
        settings = Settings()
        client = await temporal_client(settings)
        request = BulkRequest(
            action=BulkAction(signal),
            filter=BulkFilter(
                endpoint_id=where.endpoint_id,
                event_type=where.event_type,
                reason=where.reason,
                since=where.since,
                until=where.until,
            ),
            per_second=per_second,
            requested_by=arg.requested_by,
            note=arg.reason if isinstance(arg, DiscardRequest) else "",
        )
        job_id = await start_bulk(client, settings, request)
        if detach:
            return job_id, None
        with Progress(console=err, transient=True, disable=as_json) as bar:
            task = bar.add_task(f"{signal} ({job_id})", total=None)

            def show(progress: BulkProgress) -> None:
                bar.update(task, total=progress.total, completed=progress.handled)

            return job_id, await follow_job(client, job_id, show)

    job_id, progress = run(main())
    if progress is None:
        if as_json:
            print_json({"job_id": job_id})
        else:
            out.print(f"started bulk job {job_id}; follow it in the console", highlight=False)
        return
    if as_json:
        print_json({"job_id": job_id, "progress": progress})
    else:
        out.print(
            f"{signal} job {job_id}: {progress.signalled} signalled, "
            f"{progress.already_closed} already closed, {progress.failed} failed"
            + (" (cancelled before the end)" if progress.cancelled else ""),
            highlight=False,
        )
        for workflow_id, message in progress.failures.items():
            err.print(f"  {workflow_id}: {message}", highlight=False)
    if progress.failed or progress.cancelled:
        raise typer.Exit(1)


async def _targets(
    client: Client, dead_letter_id: str | None, where: DeadLetterFilter
) -> list[str]:
    if dead_letter_id is not None:
        await ensure_exists(client.get_workflow_handle(dead_letter_id), "dead letter")
        return [dead_letter_id]
    return [row.dead_letter_id for row in await list_dead_letters(client, where)]


Rate = Annotated[
    float,
    typer.Option(min=0.1, max=200, help="At most this many per second (protects the endpoint)."),
]
DryRun = Annotated[bool, typer.Option(help="Only show what would be done.")]
Job = Annotated[
    bool,
    typer.Option(
        "--job", hidden=True, help="Accepted for old scripts: bulk runs are always the job."
    ),
]
Detach = Annotated[bool, typer.Option(help="Over a filter: print the bulk job's id and return.")]
By = Annotated[str, typer.Option(help="Who is asking (default: your user name).")]


@dlq_app.command()
def redeliver(
    dead_letter_id: Annotated[str | None, typer.Argument(help="One dead letter's id.")] = None,
    endpoint: Endpoint = None,
    event_type: EventType = None,
    reason: Reason = None,
    since: Since = None,
    until: Until = None,
    rate: Rate = 10.0,
    dry_run: DryRun = False,
    job: Job = False,  # always the job now; accepted for old scripts
    detach: Detach = False,
    by: By = "",
    as_json: JsonFlag = False,
) -> None:
    """Redeliver: same delivery id and body bytes, a fresh attempt budget. Over a filter,
    a durable bulk job in the worker (the console's), followed until it ends."""
    _act(
        "redeliver",
        RedeliverRequest(requested_by=by or getpass.getuser()),
        dead_letter_id,
        _filter(endpoint, event_type, reason, since, until),
        per_second=rate,
        dry_run=dry_run,
        as_json=as_json,
        detach=detach,
    )


@dlq_app.command()
def discard(
    dead_letter_id: Annotated[str | None, typer.Argument(help="One dead letter's id.")] = None,
    endpoint: Endpoint = None,
    event_type: EventType = None,
    reason: Reason = None,
    since: Since = None,
    until: Until = None,
    note: Annotated[str, typer.Option(help="Why (recorded on the dead letter).")] = "",
    rate: Rate = 50.0,
    dry_run: DryRun = False,
    job: Job = False,  # always the job now; accepted for old scripts
    detach: Detach = False,
    by: By = "",
    as_json: JsonFlag = False,
) -> None:
    """Close dead letters as discarded, without delivering them (over a filter: the bulk
    job, as for redeliver)."""
    _act(
        "discard",
        DiscardRequest(requested_by=by or getpass.getuser(), reason=note),
        dead_letter_id,
        _filter(endpoint, event_type, reason, since, until),
        per_second=rate,
        dry_run=dry_run,
        as_json=as_json,
        detach=detach,
    )
