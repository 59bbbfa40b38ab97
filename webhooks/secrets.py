"""Signing secrets, by reference. Deliveries name a `secret_ref`; only the worker's send
activity (and the publisher's check that a ref exists) ever sees the secret itself.

The file store is a JSON object `{"ref": "whsec_...", "rotating": ["whsec_new", "whsec_old"]}`
named by `WEBHOOKS_SECRETS_FILE`. It is re-read when the file changes, so a rotation needs no
restart. Invalid secrets are rejected when the file loads, with the ref (never the secret)
in the error.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from webhooks.signing import InvalidSecretError, secret_key


class SecretStoreError(ValueError):
    """The store cannot be read, or it holds an invalid secret."""


class UnknownSecretRefError(ValueError):
    """A delivery names a secret_ref the store does not hold."""

    def __init__(self, ref: str) -> None:
        super().__init__(f"unknown secret_ref {ref!r}")
        self.ref = ref


def parse_secrets(text: str, source: str = "secrets") -> dict[str, tuple[bytes, ...]]:
    """Parse and validate the store's JSON into ref -> HMAC keys (newest first)."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise SecretStoreError(f"{source}: not valid JSON ({err.msg})") from None
    if not isinstance(raw, dict):
        raise SecretStoreError(f"{source}: must be a JSON object of ref -> secret(s)")
    keys: dict[str, tuple[bytes, ...]] = {}
    for ref, value in raw.items():
        secrets = [value] if isinstance(value, str) else value
        if (
            not isinstance(secrets, list)
            or not secrets
            or not all(isinstance(s, str) for s in secrets)
        ):
            raise SecretStoreError(f"{source}: {ref!r} must be a secret or a list of secrets")
        try:
            keys[ref] = tuple(secret_key(s) for s in secrets)
        except InvalidSecretError as err:
            raise SecretStoreError(f"{source}: {ref!r}: {err}") from None
    return keys


class FileSecretStore:
    """Secrets from a JSON file, re-read whenever its modification time changes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        self._mtime_ns: int | None = None
        self._keys: dict[str, tuple[bytes, ...]] = {}
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
        self._keys = parse_secrets(text, str(self._path))
        self._mtime_ns = mtime

    def keys(self, ref: str) -> tuple[bytes, ...]:
        """The HMAC keys that sign for `ref`; raises UnknownSecretRefError."""
        self._reload()
        try:
            return self._keys[ref]
        except KeyError:
            raise UnknownSecretRefError(ref) from None

    def __contains__(self, ref: object) -> bool:
        self._reload()
        return ref in self._keys
