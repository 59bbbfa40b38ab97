"""Signing secrets, by reference. Deliveries name a `secret_ref`; only the worker's send
activity (and the publisher's check that a ref exists) ever sees the secret itself.

The file store is a JSON object `{"ref": "whsec_...", "rotating": ["whsec_new", "whsec_old"]}`
named by `WEBHOOKS_SECRETS_FILE`. During a rotation an entry may carry an expiry, after which
it stops signing without anyone editing the file again:

    {"ref": [{"secret": "whsec_new"},
             {"secret": "whsec_old", "expires_at": "2026-12-01T00:00:00Z"}]}

It is re-read when the file changes, so a rotation needs no restart. Invalid secrets are
rejected when the file loads, with the ref (never the secret) in the error.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from webhooks.core.signing import InvalidSecretError, secret_key


class SecretStoreError(ValueError):
    """The store cannot be read, or it holds an invalid secret."""


class UnknownSecretRefError(ValueError):
    """A delivery names a secret_ref the store does not hold."""

    def __init__(self, ref: str) -> None:
        super().__init__(f"unknown secret_ref {ref!r}")
        self.ref = ref


class NoActiveSecretError(UnknownSecretRefError):
    """Every secret of a ref has expired: nothing may sign for it."""

    def __init__(self, ref: str) -> None:
        ValueError.__init__(self, f"secret_ref {ref!r} has no unexpired secret")
        self.ref = ref


Clock = Callable[[], datetime]
Entries = dict[str, tuple[tuple[bytes, datetime | None], ...]]


def parse_entries(text: str, source: str = "secrets") -> Entries:
    """Parse and validate the store's JSON into ref -> (HMAC key, expiry) pairs, newest first."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise SecretStoreError(f"{source}: not valid JSON ({err.msg})") from None
    if not isinstance(raw, dict):
        raise SecretStoreError(f"{source}: must be a JSON object of ref -> secret(s)")
    entries: Entries = {}
    for ref, value in raw.items():
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            raise SecretStoreError(f"{source}: {ref!r} must be a secret or a list of secrets")
        try:
            entries[ref] = tuple(_entry(item, f"{source}: {ref!r}") for item in items)
        except InvalidSecretError as err:
            raise SecretStoreError(f"{source}: {ref!r}: {err}") from None
    return entries


def _entry(item: Any, where: str) -> tuple[bytes, datetime | None]:
    """`"whsec_..."` or `{"secret": "whsec_...", "expires_at": "<ISO 8601 with zone>"}`."""
    if isinstance(item, str):
        return secret_key(item), None
    if not isinstance(item, dict) or not isinstance(item.get("secret"), str):
        raise SecretStoreError(f"{where} must be a secret or a list of secrets")
    unknown = sorted(set(item) - {"secret", "expires_at"})
    if unknown:
        raise SecretStoreError(f"{where}: unknown field(s) {', '.join(unknown)}")
    expires_at = item.get("expires_at")
    if expires_at is None:
        return secret_key(item["secret"]), None
    try:
        when = datetime.fromisoformat(expires_at) if isinstance(expires_at, str) else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise SecretStoreError(
            f"{where}: expires_at must be an ISO 8601 time with a zone, e.g. 2026-12-01T00:00:00Z"
        )
    return secret_key(item["secret"]), when


def parse_secrets(
    text: str, source: str = "secrets", *, now: datetime | None = None
) -> dict[str, tuple[bytes, ...]]:
    """Parse and validate the store's JSON into ref -> HMAC keys that sign at `now` (newest
    first). A ref whose secrets have all expired maps to an empty tuple."""
    moment = now or datetime.now(UTC)
    return {ref: _active(pairs, moment) for ref, pairs in parse_entries(text, source).items()}


def _active(pairs: tuple[tuple[bytes, datetime | None], ...], now: datetime) -> tuple[bytes, ...]:
    return tuple(key for key, expires_at in pairs if expires_at is None or now < expires_at)


class FileSecretStore:
    """Secrets from a JSON file, re-read whenever its modification time changes."""

    def __init__(self, path: str | os.PathLike[str], *, clock: Clock | None = None) -> None:
        self._path = Path(path)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._mtime_ns: int | None = None
        self._entries: Entries = {}
        self._reload()

    def _reload(self) -> None:
        try:
            mtime = self._path.stat().st_mtime_ns
            if mtime == self._mtime_ns:
                return
            text = self._path.read_text()
        except OSError as err:
            raise SecretStoreError(
                f"cannot read secrets file {self._path}: {err.strerror}"
            ) from None
        self._entries = parse_entries(text, str(self._path))
        self._mtime_ns = mtime

    def keys(self, ref: str) -> tuple[bytes, ...]:
        """The HMAC keys that sign for `ref` now (expired ones are left out); raises
        UnknownSecretRefError, or NoActiveSecretError when every secret has expired."""
        self._reload()
        try:
            pairs = self._entries[ref]
        except KeyError:
            raise UnknownSecretRefError(ref) from None
        keys = _active(pairs, self._clock())
        if not keys:
            raise NoActiveSecretError(ref)
        return keys

    def __contains__(self, ref: object) -> bool:
        """Whether `ref` is known and has at least one secret that has not expired."""
        self._reload()
        pairs = self._entries.get(ref) if isinstance(ref, str) else None
        return bool(pairs and _active(pairs, self._clock()))
