"""What the registry refuses, each a clear message naming ids, never secrets."""

from __future__ import annotations


class RegistryError(ValueError):
    """A request the registry refuses (the CLI prints it and exits non-zero)."""


class EndpointNotFoundError(RegistryError):
    def __init__(self, endpoint_id: str) -> None:
        super().__init__(f"no endpoint with id {endpoint_id!r}")
        self.endpoint_id = endpoint_id


class VersionConflictError(RegistryError):
    """Someone else changed the endpoint since the caller read it: re-read, then retry."""

    def __init__(self, endpoint_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"endpoint {endpoint_id!r} is at version {actual}, not {expected}: it was changed "
            "concurrently; show it again and retry with the current version"
        )
        self.endpoint_id, self.expected, self.actual = endpoint_id, expected, actual


class EndpointUnavailableError(RegistryError):
    """Publishing to an endpoint that may not receive it (disabled, or another account's)."""


class InvalidDestinationError(RegistryError):
    """The URL's host is refused by the SSRF rules (private, loopback, metadata, ...)."""


class SecretKeysError(RegistryError):
    """WEBHOOKS_SECRET_KEYS is missing or invalid, or a stored secret cannot be opened."""


class RegistryUnavailableError(Exception):
    """The database cannot be reached (not the caller's fault; retry later)."""


class SchemaVersionError(Exception):
    """The database schema is newer than this code knows (a newer release migrated it)."""
