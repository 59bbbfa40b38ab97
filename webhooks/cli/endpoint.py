"""`webhooks endpoint`: customers' endpoints in the registry (WEBHOOKS_DATABASE_URL).

A secret is printed twice in its life: by `create` and by `rotate-secret`.
"""

from __future__ import annotations

import getpass
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from webhooks.cli.output import CliError, JsonFlag, out, parse_duration, print_json, run, when
from webhooks.config import Settings
from webhooks.core.models import RetrySchedule
from webhooks.registry.models import (
    CreatedEndpoint,
    Endpoint,
    EndpointChanges,
    EndpointSettings,
    EndpointState,
    NewEndpoint,
)
from webhooks.registry.service import EndpointRegistry, ImportedRef, open_registry
from webhooks.secrets import parse_entries

endpoint_app = typer.Typer(no_args_is_help=True, help="Customers' endpoints (the registry).")
T = TypeVar("T")

IdArg = Annotated[str, typer.Argument(help="The endpoint id (ep_...).")]
By = Annotated[str | None, typer.Option(help="Who is acting (default: your user name).")]
Version = Annotated[
    int | None,
    typer.Option(
        "--version", help="Change only if the endpoint is still at this version (see `show`)."
    ),
]
EventTypeOpt = Annotated[
    list[str] | None, typer.Option("--event-type", help="Wanted event type (repeatable).")
]
HeaderOpt = Annotated[
    list[str] | None, typer.Option("--header", help="A static custom header `Name: value`.")
]
TimeoutOpt = Annotated[float | None, typer.Option(help="Seconds per attempt (default: worker's).")]
ScheduleOpt = Annotated[
    str | None, typer.Option(help="Retry waits for new deliveries, e.g. 0,5s,5m,30m,2h.")
]
MaxAttemptsOpt = Annotated[int | None, typer.Option(min=1, max=100)]


def _actor(by: str | None) -> str:
    return by or getpass.getuser()


def _with_registry(action: Callable[[EndpointRegistry], Awaitable[T]]) -> T:
    async def main() -> T:
        async with open_registry(Settings()) as registry:
            return await action(registry)

    return run(main())


def _headers(items: list[str] | None) -> dict[str, str] | None:
    if items is None:
        return None
    headers: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition(":")
        if not sep:
            raise CliError(f"--header {item!r}: use `Name: value`")
        headers[name.strip()] = value.strip()
    return headers


def _retry(schedule: str | None, max_attempts: int | None) -> RetrySchedule | None:
    if not schedule and max_attempts is None:
        return None
    delays = [parse_duration(s) for s in schedule.split(",")] if schedule else None
    return RetrySchedule(
        max_attempts=max_attempts, **({"schedule_seconds": delays} if delays else {})
    )


def _settings(
    base: EndpointSettings,
    headers: list[str] | None,
    timeout: float | None,
    schedule: str | None,
    max_attempts: int | None,
) -> EndpointSettings:
    changes: dict[str, Any] = {}
    if (parsed := _headers(headers)) is not None:
        changes["headers"] = parsed
    if timeout is not None:
        changes["timeout_seconds"] = timeout
    if (retry := _retry(schedule, max_attempts)) is not None:
        changes["retry"] = retry
    return EndpointSettings.model_validate({**base.model_dump(), **changes})


def _table(endpoints: list[Endpoint]) -> Table:
    table = Table("id", "account", "state", "url", "event types", "version")
    for e in endpoints:
        table.add_row(
            e.id,
            e.account_id,
            e.state.value,
            e.url,
            ", ".join(e.event_types) if e.event_types is not None else "(all)",
            str(e.version),
        )
    return table


def _show(endpoint: Endpoint) -> None:
    table = Table(show_header=False)
    rows = {
        "id": endpoint.id,
        "account": endpoint.account_id,
        "url": endpoint.url,
        "description": endpoint.description,
        "state": endpoint.state.value
        + (
            f" ({endpoint.disabled_reason}; by {endpoint.disabled_by} at "
            f"{when(endpoint.disabled_at)})"
            if endpoint.state is EndpointState.DISABLED
            else ""
        ),
        "event types": ", ".join(endpoint.event_types)
        if endpoint.event_types is not None
        else "(all)",
        "settings": endpoint.settings.model_dump_json(exclude_defaults=True),
        "secrets": "; ".join(
            f"{s.id} created {when(s.created_at)}"
            + (f", signs until {when(s.expires_at)}" if s.expires_at else "")
            for s in endpoint.secrets
        ),
        "created": when(endpoint.created_at),
        "updated": when(endpoint.updated_at),
        "version": str(endpoint.version),
    }
    for key, value in rows.items():
        table.add_row(key, value)
    out.print(table)


def _print(endpoint: Endpoint, as_json: bool) -> None:
    if as_json:
        print_json(endpoint)
    else:
        _show(endpoint)


def _print_created(created: CreatedEndpoint, as_json: bool) -> None:
    secret = created.secret.get_secret_value()
    if as_json:
        print_json({"endpoint": created.endpoint.model_dump(mode="json"), "secret": secret})
        return
    out.print(created.endpoint.id, highlight=False)
    out.print(secret, highlight=False)
    out.print(
        "[dim]the secret is shown only now: give it to the customer to verify signatures[/]",
        highlight=False,
    )


@endpoint_app.command()
def create(
    account_id: Annotated[str, typer.Option(help="The customer account it belongs to.")],
    url: Annotated[str, typer.Option(help="Where to POST (http or https).")],
    event_type: EventTypeOpt = None,
    description: Annotated[str, typer.Option(help="Free text for operators.")] = "",
    header: HeaderOpt = None,
    timeout: TimeoutOpt = None,
    schedule: ScheduleOpt = None,
    max_attempts: MaxAttemptsOpt = None,
    by: By = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an endpoint; prints its id and its signing secret (shown only now)."""

    async def action(registry: EndpointRegistry) -> CreatedEndpoint:
        new = NewEndpoint(
            account_id=account_id,
            url=url,
            description=description,
            event_types=event_type or None,
            settings=_settings(EndpointSettings(), header, timeout, schedule, max_attempts),
        )
        return await registry.create(new, actor=_actor(by))

    _print_created(_with_registry(action), as_json)


@endpoint_app.command("list")
def list_(
    account_id: Annotated[str | None, typer.Option(help="Only this account's.")] = None,
    state: Annotated[EndpointState | None, typer.Option(help="Only in this state.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List endpoints."""

    async def action(registry: EndpointRegistry) -> list[Endpoint]:
        return await registry.list_endpoints(account_id=account_id, state=state)

    endpoints = _with_registry(action)
    if as_json:
        print_json({"endpoints": endpoints})
        return
    out.print(_table(endpoints))
    out.print(f"{len(endpoints)} endpoint(s)", highlight=False)


@endpoint_app.command()
def show(endpoint_id: IdArg, as_json: JsonFlag = False) -> None:
    """Show an endpoint: URL, state, filter, settings, secrets (never their values), version."""

    async def action(registry: EndpointRegistry) -> Endpoint:
        return await registry.get(endpoint_id)

    _print(_with_registry(action), as_json)


@endpoint_app.command()
def update(
    endpoint_id: IdArg,
    url: Annotated[str | None, typer.Option(help="New URL (applies to the next attempt).")] = None,
    description: Annotated[str | None, typer.Option()] = None,
    event_type: EventTypeOpt = None,
    all_event_types: Annotated[
        bool, typer.Option("--all-event-types", help="Take every event type.")
    ] = False,
    header: HeaderOpt = None,
    timeout: TimeoutOpt = None,
    schedule: ScheduleOpt = None,
    max_attempts: MaxAttemptsOpt = None,
    version: Version = None,
    by: By = None,
    as_json: JsonFlag = False,
) -> None:
    """Change URL, event types, description or settings (with --version: only if unchanged)."""

    async def action(registry: EndpointRegistry) -> Endpoint:
        if event_type and all_event_types:
            raise CliError("give --event-type or --all-event-types, not both")
        current = await registry.get(endpoint_id)
        fields: dict[str, Any] = {}
        if url is not None:
            fields["url"] = url
        if description is not None:
            fields["description"] = description
        if event_type:
            fields["event_types"] = event_type
        if all_event_types:
            fields["event_types"] = None
        if any(v is not None for v in (header, timeout, schedule, max_attempts)):
            fields["settings"] = _settings(
                current.settings, header, timeout, schedule, max_attempts
            )
        if not fields:
            raise CliError("nothing to change: give --url, --event-type, --description, ...")
        return await registry.update(
            endpoint_id,
            EndpointChanges.model_validate(fields),
            expected_version=current.version if version is None else version,
            actor=_actor(by),
        )

    _print(_with_registry(action), as_json)


@endpoint_app.command()
def disable(
    endpoint_id: IdArg,
    reason: Annotated[str, typer.Option(help="Why (shown on the endpoint).")] = (
        "disabled by an operator"
    ),
    version: Version = None,
    by: By = None,
    as_json: JsonFlag = False,
) -> None:
    """Disable: waiting deliveries dead-letter as `endpoint_disabled`; publishing is refused."""

    async def action(registry: EndpointRegistry) -> Endpoint:
        return await registry.disable(
            endpoint_id, reason=reason, expected_version=version, actor=_actor(by)
        )

    _print(_with_registry(action), as_json)


@endpoint_app.command()
def enable(
    endpoint_id: IdArg, version: Version = None, by: By = None, as_json: JsonFlag = False
) -> None:
    """Enable a disabled endpoint."""

    async def action(registry: EndpointRegistry) -> Endpoint:
        return await registry.enable(endpoint_id, expected_version=version, actor=_actor(by))

    _print(_with_registry(action), as_json)


@endpoint_app.command()
def delete(
    endpoint_id: IdArg, version: Version = None, by: By = None, as_json: JsonFlag = False
) -> None:
    """Delete an endpoint and its secrets: waiting deliveries dead-letter as `endpoint_deleted`."""

    async def action(registry: EndpointRegistry) -> Endpoint:
        return await registry.delete(endpoint_id, expected_version=version, actor=_actor(by))

    deleted = _with_registry(action)
    if as_json:
        print_json({"deleted": deleted.id})
    else:
        out.print(f"deleted {deleted.id}", highlight=False)


@endpoint_app.command("rotate-secret")
def rotate_secret(
    endpoint_id: IdArg,
    overlap: Annotated[
        str, typer.Option(help="How long the current secret(s) keep signing, e.g. 24h, 0.")
    ] = "24h",
    version: Version = None,
    by: By = None,
    as_json: JsonFlag = False,
) -> None:
    """Add a new secret (printed once); the old one keeps signing until the overlap ends."""
    overlap_seconds = parse_duration(overlap) if overlap else 0.0

    async def action(registry: EndpointRegistry) -> CreatedEndpoint:
        return await registry.rotate_secret(
            endpoint_id,
            overlap_seconds=overlap_seconds,
            expected_version=version,
            actor=_actor(by),
        )

    _print_created(_with_registry(action), as_json)


@endpoint_app.command("import")
def import_(
    secrets_file: Annotated[
        Path, typer.Option(help="The old WEBHOOKS_SECRETS_FILE (ref -> secret(s)).")
    ],
    account_id: Annotated[str, typer.Option(help="The account the imported endpoints get.")],
    by: By = None,
    as_json: JsonFlag = False,
) -> None:
    """Import old `secret_ref`s: deliveries started before the registry keep signing."""

    async def action(registry: EndpointRegistry) -> list[ImportedRef]:
        try:
            text = secrets_file.read_text()
        except OSError as err:
            raise CliError(f"cannot read {secrets_file}: {err.strerror}") from None
        entries = parse_entries(text, str(secrets_file))
        return await registry.import_legacy(entries, account_id=account_id, actor=_actor(by))

    imported = _with_registry(action)
    if as_json:
        print_json(
            {
                "imported": [
                    {"secret_ref": i.ref, "endpoint_id": i.endpoint_id, "created": i.created}
                    for i in imported
                ]
            }
        )
        return
    for i in imported:
        note = "imported" if i.created else "already imported"
        out.print(f"{i.ref} -> {i.endpoint_id} ({note})", highlight=False)
