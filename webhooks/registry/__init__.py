"""The endpoint registry: endpoints as records in a real database (SQLite or PostgreSQL).

    async with open_registry(Settings()) as registry:
        created = await registry.create(NewEndpoint(account_id="acct_1", url="https://..."))

`models` holds the records and their validation, `crypto` the key ring that seals signing
secrets at rest, `schema` the tables, `store` the queries, `migrate` the Alembic upgrade,
and `service` the `EndpointRegistry` that the CLI, console, API, publisher and worker use.
Foundation-level I/O: imports only `webhooks.core` and the settings.
"""
