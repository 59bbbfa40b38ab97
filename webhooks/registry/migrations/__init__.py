"""Alembic migrations of the registry schema (applied by `webhooks.registry.migrate`)."""
