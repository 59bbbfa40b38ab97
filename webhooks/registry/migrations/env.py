"""Alembic's environment: online only, on the connection `webhooks.registry.migrate` passes."""

from __future__ import annotations

from alembic import context

from webhooks.registry.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run registry migrations with `webhooks db upgrade`")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
