"""`webhooks db`: the registry database's schema."""

from __future__ import annotations

import typer

from webhooks.cli.output import JsonFlag, out, print_json, run
from webhooks.config import Settings
from webhooks.registry.migrate import schema_status, upgrade
from webhooks.registry.store import create_engine

db_app = typer.Typer(no_args_is_help=True, help="The endpoint registry's database.")


@db_app.command("upgrade")
def upgrade_command(as_json: JsonFlag = False) -> None:
    """Apply the registry's migrations to WEBHOOKS_DATABASE_URL (idempotent)."""

    async def main() -> tuple[str | None, str | None]:
        engine = create_engine(Settings().registry_url())
        try:
            before = (await schema_status(engine)).current
            return before, (await upgrade(engine)).current
        finally:
            await engine.dispose()

    before, after = run(main())
    if as_json:
        print_json({"from": before, "to": after})
    elif before == after:
        out.print(f"registry schema already at revision {after}", highlight=False)
    else:
        out.print(f"registry schema upgraded from {before or 'empty'} to {after}", highlight=False)
