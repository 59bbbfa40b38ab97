"""`webhooks circuit`: see and steer an endpoint's circuit breaker."""

from __future__ import annotations

import asyncio
import getpass
from typing import Annotated

import typer
from rich.table import Table
from temporalio.client import RPCError
from temporalio.service import RPCStatusCode

from webhooks.cli.output import CliError, JsonFlag, out, print_json, run, temporal_client, when
from webhooks.config import Settings
from webhooks.core.circuit import VIEW_LAG_SECONDS, CircuitInput, CircuitSnapshot, OperatorRequest
from webhooks.core.ids import circuit_id
from webhooks.core.names import CIRCUIT_WORKFLOW

circuit_app = typer.Typer(no_args_is_help=True, help="Per-endpoint circuit breakers.")

EndpointArg = Annotated[str, typer.Argument(help="The endpoint id.")]
Reason = Annotated[str, typer.Option(help="Why (recorded in the worker log).")]
By = Annotated[str, typer.Option(help="Who is asking (default: your user name).")]


@circuit_app.command()
def show(endpoint_id: EndpointArg, as_json: JsonFlag = False) -> None:
    """Show the circuit: phase, failure rate, counts, when it opened and probes next."""

    async def main() -> CircuitSnapshot | None:
        handle = (await temporal_client(Settings())).get_workflow_handle(circuit_id(endpoint_id))
        try:
            snapshot: CircuitSnapshot = await handle.query("state", result_type=CircuitSnapshot)
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return None  # Never failed, or healthy long enough to be forgotten.
            raise
        return snapshot

    snapshot = run(main())
    if snapshot is None:
        snapshot = CircuitSnapshot(endpoint_id=endpoint_id)
    if as_json:
        print_json(
            {
                **snapshot.model_dump(mode="json", exclude={"buckets"}),
                "failure_rate": snapshot.failure_rate(),
                "requests_in_window": snapshot.requests_in_window(),
            }
        )
        return
    table = Table(show_header=False)
    rows = {
        "endpoint": snapshot.endpoint_id,
        "phase": snapshot.phase.value,
        "failure rate": f"{snapshot.failure_rate():.0%} of {snapshot.requests_in_window()}",
        "consecutive failures": str(snapshot.consecutive_failures),
        "failing since": when(snapshot.failing_since),
        "opened at": when(snapshot.opened_at),
        "next probe at": when(snapshot.next_probe_at),
        "trips": str(snapshot.trips),
        "disabled": snapshot.disabled_reason or "no",
        "reports received": str(snapshot.reports_received),
    }
    for name, value in rows.items():
        table.add_row(name, value)
    out.print(table)


def _signal(
    endpoint_id: str, name: str, by: str, reason: str, *, start: bool, as_json: bool
) -> None:
    request = OperatorRequest(requested_by=by or getpass.getuser(), reason=reason)

    async def main() -> None:
        settings = Settings()
        client = await temporal_client(settings)
        if start:
            # Disabling must work for an endpoint that never failed (no circuit yet).
            await client.start_workflow(
                CIRCUIT_WORKFLOW,
                CircuitInput(endpoint_id=endpoint_id, config=settings.circuit),
                id=circuit_id(endpoint_id),
                task_queue=settings.task_queue,
                start_signal=name,
                start_signal_args=[request],
            )
            return
        try:
            await client.get_workflow_handle(circuit_id(endpoint_id)).signal(name, request)
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise CliError(f"endpoint {endpoint_id!r} has no circuit: it is closed") from None
            raise
        # Workers' cached views may lag this long: once we return, every worker lets
        # deliveries through (so `enable && webhooks dlq redeliver ...` is safe).
        await asyncio.sleep(VIEW_LAG_SECONDS)

    run(main())
    if as_json:
        print_json({"endpoint_id": endpoint_id, "signalled": name})
    else:
        out.print(f"signalled {name} to the circuit of {endpoint_id}", highlight=False)


@circuit_app.command()
def reset(
    endpoint_id: EndpointArg, by: By = "", reason: Reason = "", as_json: JsonFlag = False
) -> None:
    """Close the circuit and forget its failures."""
    _signal(endpoint_id, "reset", by, reason, start=False, as_json=as_json)


@circuit_app.command()
def disable(
    endpoint_id: EndpointArg, by: By = "", reason: Reason = "", as_json: JsonFlag = False
) -> None:
    """Disable the endpoint: its deliveries go to the dead-letter queue, unsent."""
    _signal(endpoint_id, "disable", by, reason, start=True, as_json=as_json)


@circuit_app.command()
def enable(
    endpoint_id: EndpointArg, by: By = "", reason: Reason = "", as_json: JsonFlag = False
) -> None:
    """Enable a disabled endpoint (then redeliver its dead letters with `webhooks dlq`)."""
    _signal(endpoint_id, "enable", by, reason, start=False, as_json=as_json)
