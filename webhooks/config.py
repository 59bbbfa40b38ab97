"""Settings from the environment, with Temporal's own variable names for the connection."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from webhooks.core.circuit import CircuitConfig
from webhooks.core.policy import MAX_EXCERPT_BYTES, MAX_HTTP_TIMEOUT_SECONDS


class Settings(BaseSettings):
    """Everything a worker or publisher reads from its environment."""

    model_config = SettingsConfigDict(
        env_prefix="WEBHOOKS_", env_nested_delimiter="__", extra="ignore"
    )

    temporal_address: str = Field(
        default="localhost:7233", validation_alias=AliasChoices("TEMPORAL_ADDRESS")
    )
    temporal_namespace: str = Field(
        default="default", validation_alias=AliasChoices("TEMPORAL_NAMESPACE")
    )
    task_queue: str = "webhooks"
    control_task_queue: str | None = None
    """Circuits and operator jobs (bulk dead-letter actions), apart from the deliveries so
    that their backlog never slows them; defaults to `<task_queue>-control`."""
    state_dir: Path = Path(".webhooks")
    """Where `webhooks dev` keeps its files, and where the default registry database lives."""
    database_url: SecretStr | None = None
    """The registry: `postgresql://user:pass@host/db` in production, or `sqlite:///path`.
    Default: the SQLite file `<state_dir>/registry.db` (the one `webhooks dev` uses)."""
    secret_keys: SecretStr | None = None
    """Keys sealing endpoint secrets at rest, newest first: `k2:<base64 of 32 bytes>,k1:...`."""
    secret_keys_file: Path | None = None
    """The same, from a file."""
    registry_cache_seconds: float = Field(default=2, ge=0, le=60)
    """How long the worker reuses an endpoint it read (URL, secrets, state) before re-reading."""
    registry_stale_seconds: float = Field(default=60, ge=0, le=3600)
    """While the database is unreachable, the worker keeps using what it last read for this
    long; after that attempts fail as `registry_unavailable` and retry."""
    allow_private_destinations: bool = False
    allowed_networks: Annotated[tuple[IPv4Network | IPv6Network, ...], NoDecode] = ()
    """Reachable even while private destinations are refused: `127.0.0.0/8,10.1.0.0/16`."""
    require_https: bool = False
    """Refuse http:// webhook URLs, at publish and at send (production)."""
    codec_keys: SecretStr | None = None
    """History encryption keys, newest first: `k2:<base64 of 32 bytes>,k1:<...>`."""
    codec_keys_file: Path | None = None
    """The same, from a file (one `id:key` per line or comma-separated)."""
    http_timeout_seconds: float = Field(default=15, gt=0, le=MAX_HTTP_TIMEOUT_SECONDS)
    """Total time for one attempt: connect, send, and read the (capped) response."""
    connect_timeout_seconds: float = Field(default=5, gt=0, le=60)
    response_excerpt_bytes: int = Field(default=1024, ge=0, le=MAX_EXCERPT_BYTES)
    """How much of a response body an attempt records; 0 records none. At most 2 KiB: each
    attempt's excerpt is in the delivery's history and its dead letter."""
    max_connections: int = Field(default=200, ge=1)
    max_concurrent_sends: int = Field(default=20, ge=1, le=1000)
    """Delivery workflow tasks (each runs at most one attempt's send, a local activity) a
    worker takes on at once. More waits in Temporal's task queue, where it costs nothing;
    a task the worker's CPU cannot finish inside its 10 s timeout is given out again, and
    its send runs twice (the SDK's default of 100 did that on a loaded 2-core machine)."""
    metrics_bind_address: str | None = None
    """Serve Prometheus metrics on this `host:port` (e.g. `0.0.0.0:9464`)."""
    send_traceparent: bool = False
    """With tracing on, send customers a W3C `traceparent` header on every attempt."""
    log_format: Literal["text", "json"] = "text"
    """`json`: one JSON object per line with the delivery's fields (webhooks/logs.py)."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    operations_account_id: str | None = None
    """StreamPay's own account: its registry endpoints get the operational events."""
    dead_letter_expiry_warning_seconds: float = Field(default=3 * 86400, ge=0)
    """Send `dead_letter.expiring` this long before an open dead letter expires."""
    gauges_interval_seconds: float | None = Field(default=None, ge=1)
    """Refresh the backlog gauges from visibility this often; set it on one worker only."""
    circuit_enabled: bool = True
    circuit: CircuitConfig = CircuitConfig()
    """Per-endpoint circuit breaker, e.g. `WEBHOOKS_CIRCUIT__COOLDOWN_SECONDS=60`."""

    @field_validator("log_format", "log_level", mode="before")
    @classmethod
    def _case(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        return value.lower() if value.lower() in ("text", "json") else value.upper()

    @field_validator("allowed_networks", mode="before")
    @classmethod
    def _split_networks(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(ip_network(v.strip()) for v in value.split(",") if v.strip())
        return value

    @property
    def control_queue(self) -> str:
        return self.control_task_queue or f"{self.task_queue}-control"

    def registry_url(self) -> str:
        """The SQLAlchemy async URL of the registry database."""
        if self.database_url is None:
            return f"sqlite+aiosqlite:///{self.state_dir / 'registry.db'}"
        return self.database_url.get_secret_value()
