"""Endpoint records and their validation: what an account's endpoint is, and what may be
stored in one. Pure (no I/O); the DNS half of the URL check is in `urls`.
"""

from __future__ import annotations

import base64
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr

from webhooks.core.models import HeaderSafe, HttpUrl, RetrySchedule
from webhooks.core.signing import SECRET_PREFIX

SECRET_BYTES = 24
"""Random bytes in a generated `whsec_` secret (the issue allows 24-64; Svix uses 24)."""
DEFAULT_OVERLAP_SECONDS = 24 * 3600.0
"""How long a rotated-out secret keeps signing (Svix's default)."""
MAX_HEADERS = 10
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "user-agent",
        "content-length",
        "host",
        "transfer-encoding",
        "connection",
        "accept-encoding",
    }
)
"""Custom headers may never set these (nor any `webhook-*`): the signature, framing and
identity of every request stay ours."""
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")
_VALUE = re.compile(r"^[\x20-\x7e]{0,1024}$")


def new_endpoint_id() -> str:
    """`ep_` + 26 lowercase base32 characters of a random UUID."""
    return "ep_" + base64.b32encode(uuid.uuid4().bytes).decode().rstrip("=").lower()


def new_secret_id() -> str:
    return "sec_" + uuid.uuid4().hex[:20]


def generate_secret(nbytes: int = SECRET_BYTES) -> str:
    """A fresh Standard Webhooks secret, `whsec_<base64 of nbytes random bytes>`."""
    if not 24 <= nbytes <= 64:
        raise ValueError("a generated secret holds 24 to 64 random bytes")
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(nbytes)).decode()


def _headers(value: dict[str, str]) -> dict[str, str]:
    if len(value) > MAX_HEADERS:
        raise ValueError(f"at most {MAX_HEADERS} custom headers")
    seen: set[str] = set()
    for name, text in value.items():
        lower = name.lower()
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"header name {name!r} is not a valid HTTP token")
        if lower.startswith("webhook-") or lower in RESERVED_HEADERS:
            raise ValueError(f"header {name!r} is set by the sender and cannot be overridden")
        if lower in seen:
            raise ValueError(f"header {name!r} appears twice")
        if not _VALUE.fullmatch(text):
            raise ValueError(f"header {name!r}: value must be printable ASCII, at most 1024")
        seen.add(lower)
    return value


def _event_types(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    if not value:
        raise ValueError("give at least one event type, or none at all for every type")
    return sorted(set(value))


CustomHeaders = Annotated[dict[str, str], AfterValidator(_headers)]
EventTypes = Annotated[list[HeaderSafe] | None, AfterValidator(_event_types)]
Description = Annotated[str, Field(max_length=500)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EndpointState(StrEnum):
    ENABLED = "enabled"
    DISABLED = "disabled"


class EndpointSettings(_Model):
    """Optional per-endpoint delivery settings; unset means the worker's defaults."""

    retry: RetrySchedule | None = None
    """The schedule new deliveries to this endpoint get (a publish may still override it)."""
    timeout_seconds: float | None = Field(default=None, gt=0, le=120)
    """Total time for one attempt to this endpoint (default: WEBHOOKS_HTTP_TIMEOUT_SECONDS)."""
    headers: CustomHeaders = {}
    """A few static headers sent with every request, e.g. an API gateway's routing key."""


class SecretInfo(_Model):
    """A signing secret as listed: never its value."""

    id: str
    created_at: datetime
    expires_at: datetime | None = None


class Endpoint(_Model):
    """An account's endpoint, as stored (without secret values)."""

    id: str
    account_id: str
    url: str
    description: str = ""
    state: EndpointState = EndpointState.ENABLED
    disabled_reason: str | None = None
    disabled_by: str | None = None
    disabled_at: datetime | None = None
    event_types: list[str] | None = None
    """The event types it wants; None means every type."""
    settings: EndpointSettings = EndpointSettings()
    secrets: list[SecretInfo] = []
    legacy_ref: str | None = None
    """The `secret_ref` it was imported from (deliveries started before the registry)."""
    created_at: datetime
    updated_at: datetime
    version: int

    def wants(self, event_type: str) -> bool:
        return self.event_types is None or event_type in self.event_types


class NewEndpoint(_Model):
    """What `create` takes. The id and the first secret are generated."""

    account_id: HeaderSafe
    url: HttpUrl
    description: Description = ""
    event_types: EventTypes = None
    settings: EndpointSettings = EndpointSettings()


class EndpointChanges(_Model):
    """What `update` changes: only the fields given (`event_types=None` given means all)."""

    url: HttpUrl | None = None
    description: Description | None = None
    event_types: EventTypes = None
    settings: EndpointSettings | None = None


class CreatedEndpoint(_Model):
    """The answer of `create` and `rotate_secret`: the only time a secret is shown."""

    endpoint: Endpoint
    secret: SecretStr


class AuditEntry(_Model):
    """One row of the audit log: who did what to which record, before and after."""

    id: int
    at: datetime
    actor: str
    action: str
    target: str
    before: dict[str, object] | None = None
    after: dict[str, object] | None = None


@dataclass(frozen=True)
class ResolvedEndpoint:
    """What the worker needs for one attempt. Holds key bytes: never serialized, never
    leaves the worker's memory."""

    id: str
    account_id: str
    url: str
    state: EndpointState
    keys: tuple[bytes, ...]
    """The HMAC keys that sign now, newest first."""
    settings: EndpointSettings
