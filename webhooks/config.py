"""Settings from the environment, with Temporal's own variable names for the connection."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from webhooks.secrets import FileSecretStore


class Settings(BaseSettings):
    """Everything a worker or publisher reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="WEBHOOKS_", extra="ignore")

    temporal_address: str = Field(
        default="localhost:7233", validation_alias=AliasChoices("TEMPORAL_ADDRESS")
    )
    temporal_namespace: str = Field(
        default="default", validation_alias=AliasChoices("TEMPORAL_NAMESPACE")
    )
    task_queue: str = "webhooks"
    secrets_file: Path | None = None
    allow_private_destinations: bool = False
    http_timeout_seconds: float = Field(default=15, gt=0, le=120)
    """Total time for one attempt: connect, send, and read the (capped) response."""
    connect_timeout_seconds: float = Field(default=5, gt=0, le=60)
    response_excerpt_bytes: int = Field(default=1024, ge=0, le=65536)
    """How much of a response body an attempt records; 0 records none."""
    max_connections: int = Field(default=200, ge=1)

    def secret_store(self) -> FileSecretStore | None:
        return FileSecretStore(self.secrets_file) if self.secrets_file else None
