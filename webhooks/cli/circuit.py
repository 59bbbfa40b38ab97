"""`webhooks circuit`: see and steer an endpoint's circuit breaker."""

from __future__ import annotations

import contextlib
import getpass
from typing import Annotated

import typer
from rich.table import Table

from webhooks.cli.output import CliError, JsonFlag, out, print_json, run, temporal_client, when
from webhooks.config import Settings
from webhooks.core.circuit import CircuitSnapshot, OperatorRequest, PublishedCircuit
from webhooks.ops import circuits
from webhooks.registry.service import EndpointRegistry, open_registry

circuit_app = typer.Typer(no_args_is_help=True, help="Per-endpoint circuit breakers.")

EndpointArg = Annotated[str, typer.Argument(help="The endpoint id.")]
Reason = Annotated[str, typer.Option(help="Why (recorded in the worker log).")]
By = Annotated[str, typer.Option(help="Who is asking (default: your user name).")]


@circuit_app.command()
def show(endpoint_id: EndpointArg, as_json: JsonFlag = False) -> None:
    """Show the circuit: phase, failure rate, counts, when it opened and probes next."""

    async def main() -> CircuitSnapshot:
        return await circuits.circuit_snapshot(await temporal_client(Settings()), endpoint_id)

    snapshot = run(main())
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


def _signal(endpoint_id: str, name: str, by: str, reason: str, *, as_json: bool) -> None:
    request = OperatorRequest(requested_by=by or getpass.getuser(), reason=reason)

    async def main() -> None:
        settings = Settings()
        client = await temporal_client(settings)
        async with contextlib.AsyncExitStack() as stack:
            registry: EndpointRegistry | None = None

            async def verdicts(endpoint_id: str) -> PublishedCircuit | None:
                # Opened once the signal went: `reset` of no circuit needs no database.
                nonlocal registry
                if registry is None:
                    registry = await stack.enter_async_context(open_registry(settings, keys=False))
                return await registry.circuit(endpoint_id)

            try:
                await circuits.steer_circuit(
                    client, settings, endpoint_id, name, request, verdicts=verdicts
                )
            except circuits.NoCircuitError as err:
                raise CliError(str(err)) from None

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
    _signal(endpoint_id, "reset", by, reason, as_json=as_json)


@circuit_app.command()
def disable(
    endpoint_id: EndpointArg, by: By = "", reason: Reason = "", as_json: JsonFlag = False
) -> None:
    """Disable the endpoint: its deliveries go to the dead-letter queue, unsent."""
    _signal(endpoint_id, "disable", by, reason, as_json=as_json)


@circuit_app.command()
def enable(
    endpoint_id: EndpointArg, by: By = "", reason: Reason = "", as_json: JsonFlag = False
) -> None:
    """Enable a disabled endpoint (then redeliver its dead letters with `webhooks dlq`)."""
    _signal(endpoint_id, "enable", by, reason, as_json=as_json)
