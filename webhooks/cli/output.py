"""What every `webhooks` command shares: error handling, output, Temporal connection."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import BaseModel, TypeAdapter, ValidationError
from rich.console import Console
from rich.table import Table
from temporalio.client import Client, RPCError, WorkflowHandle
from temporalio.service import RPCStatusCode

from webhooks.config import Settings
from webhooks.core.models import Attempt
from webhooks.publisher import connect
from webhooks.registry.errors import RegistryUnavailableError, SchemaVersionError
from webhooks.secrets import SecretStoreError
from webhooks.tracing import flush_tracing

log = logging.getLogger("webhooks.cli")
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
    except (CliError, ValueError, SecretStoreError) as e:
        err.print(f"[red]error:[/] {e}", highlight=False)
    except RPCError as e:
        err.print(f"[red]error:[/] Temporal said: {e.message}", highlight=False)
    except (RegistryUnavailableError, SchemaVersionError) as e:
        err.print(f"[red]error:[/] {e}", highlight=False)
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


async def temporal_client(settings: Settings) -> Client:
    try:
        return await connect(settings)
    except RuntimeError as e:
        raise CliError(
            f"cannot reach Temporal at {settings.temporal_address} "
            f"(namespace {settings.temporal_namespace}); set TEMPORAL_ADDRESS or run "
            f"`webhooks dev`. ({e})"
        ) from None


async def ensure_exists(handle: WorkflowHandle[Any, Any], what: str) -> None:
    try:
        await handle.describe()
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise CliError(f"no {what} with id {handle.id!r}") from None
        raise


def attempt_table(attempts: list[Attempt]) -> Table:
    table = Table("#", "run", "started", "ms", "outcome", "status", "error", "next attempt")
    for a in attempts:
        table.add_row(
            str(a.number),
            str(a.generation),
            when(a.started_at),
            f"{a.duration_ms:.0f}",
            a.outcome.value,
            str(a.status_code or ""),
            f"{a.error_kind.value}: {a.error}" if a.error_kind else "",
            when(a.next_attempt_at) if a.next_attempt_at else "",
        )
    return table


def when(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


async def serve_until_stopped(serve: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `serve(stop)` until SIGINT or SIGTERM sets `stop`; `serve` then shuts down
    gracefully. A second signal does not wait for that: the process ends at once, with
    128 + the signal's number (what is in flight is retried by other workers)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        # Logged, not printed: with WEBHOOKS_LOG_FORMAT=json stderr stays JSON lines.
        if stop.is_set():
            log.warning("%s again: exiting now", sig.name)
            exit_now(128 + sig.value)
        log.warning("%s: finishing in-flight work (again to exit now)", sig.name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    await serve(stop)


def exit_now(code: int) -> NoReturn:
    """End the process with `code` without running interpreter finalization.

    The Temporal SDK's runtime threads can still be alive at exit; finalizing the
    interpreter under them occasionally aborts the process (SIGABRT in PyGILState_Release)
    after the command has succeeded. Output and buffered trace spans are flushed first;
    nothing else needs finalizing.
    """
    flush_tracing()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
