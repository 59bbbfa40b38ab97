"""The old secrets file (`WEBHOOKS_SECRETS_FILE`), read once more to import it.

Before the registry, deliveries named a `secret_ref` in a JSON file that every worker and
publisher mounted: `{"ref": "whsec_...", "rotating": ["whsec_new", "whsec_old"]}`, or with
expiries `{"ref": [{"secret": "whsec_new"}, {"secret": "whsec_old", "expires_at": "..."}]}`.
`webhooks endpoint import` parses it with this module and moves every ref into the registry;
nothing reads the file at run time any more.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from webhooks.core.signing import InvalidSecretError, secret_key
from webhooks.registry.errors import RegistryError


class SecretsFileError(RegistryError):
    """The secrets file is not valid JSON of the old format, or holds an invalid secret."""


Entries = dict[str, tuple[tuple[bytes, datetime | None], ...]]


def parse_entries(text: str, source: str = "secrets") -> Entries:
    """Parse and validate the store's JSON into ref -> (HMAC key, expiry) pairs, newest first."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise SecretsFileError(f"{source}: not valid JSON ({err.msg})") from None
    if not isinstance(raw, dict):
        raise SecretsFileError(f"{source}: must be a JSON object of ref -> secret(s)")
    entries: Entries = {}
    for ref, value in raw.items():
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            raise SecretsFileError(f"{source}: {ref!r} must be a secret or a list of secrets")
        try:
            entries[ref] = tuple(_entry(item, f"{source}: {ref!r}") for item in items)
        except InvalidSecretError as err:
            raise SecretsFileError(f"{source}: {ref!r}: {err}") from None
    return entries


def _entry(item: Any, where: str) -> tuple[bytes, datetime | None]:
    """`"whsec_..."` or `{"secret": "whsec_...", "expires_at": "<ISO 8601 with zone>"}`."""
    if isinstance(item, str):
        return secret_key(item), None
    if not isinstance(item, dict) or not isinstance(item.get("secret"), str):
        raise SecretsFileError(f"{where} must be a secret or a list of secrets")
    unknown = sorted(set(item) - {"secret", "expires_at"})
    if unknown:
        raise SecretsFileError(f"{where}: unknown field(s) {', '.join(unknown)}")
    expires_at = item.get("expires_at")
    if expires_at is None:
        return secret_key(item["secret"]), None
    try:
        when = datetime.fromisoformat(expires_at) if isinstance(expires_at, str) else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise SecretsFileError(
            f"{where}: expires_at must be an ISO 8601 time with a zone, e.g. 2026-12-01T00:00:00Z"
        )
    return secret_key(item["secret"]), when
