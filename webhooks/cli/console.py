"""`webhooks console`: serve the operator console, the API and the codec endpoint; make the
password hashes and API tokens its configuration holds."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from webhooks.cli.output import out, print_json, run, serve_until_stopped
from webhooks.config import Settings
from webhooks.core.roles import Role

console_app = typer.Typer(
    invoke_without_command=True, help="The operator console, management API and codec endpoint."
)


@console_app.callback()
def console(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
) -> None:
    """Serve the console until Ctrl-C (users and tokens from WEBHOOKS_CONSOLE__*)."""
    if ctx.invoked_subcommand is not None:
        return
    from webhooks.server.app import serve_console
    from webhooks.server.settings import ConsoleSettings

    def announce(message: str) -> None:
        out.print(message, highlight=False)

    async def main() -> None:
        settings, console_settings = Settings(), ConsoleSettings()
        await serve_until_stopped(
            lambda stop: serve_console(
                settings, console_settings, stop, host=host, port=port, announce=announce
            )
        )

    run(main())


@console_app.command("hash-password")
def hash_password(
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
) -> None:
    """Print the argon2 hash of a password, for a user's `password_hash`."""
    from webhooks.server.auth import hash_password as make

    out.print(make(password), highlight=False, soft_wrap=True)


@console_app.command("new-token")
def new_token(
    name: Annotated[str, typer.Option(help="Who or what holds it (shown in the audit log).")],
    role: Annotated[Role, typer.Option(help="What it may do.")] = Role.VIEWER,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Make an API token: prints it once, and the entry to add to WEBHOOKS_CONSOLE__TOKENS."""
    from webhooks.server.auth import new_token as make

    token, digest = make()
    entry = {"name": name, "token_hash": digest, "role": role.value}
    if as_json:
        print_json({"token": token, "entry": entry})
        return
    out.print(f"token (shown once): {token}", highlight=False, soft_wrap=True)
    out.print(f"configure: {json.dumps(entry)}", highlight=False, soft_wrap=True)
