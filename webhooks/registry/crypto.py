"""Signing secrets at rest: AES-256-GCM under a key ring (`WEBHOOKS_SECRET_KEYS`).

    WEBHOOKS_SECRET_KEYS="k2:<base64 of 32 bytes>,k1:<base64 of 32 bytes>"   # newest first

The newest key seals, any key opens; the key id is stored beside each ciphertext, so a new
key is added in front and an old one dropped once nothing sealed with it is left
(`EndpointRegistry.reseal` rewrites every secret under the newest key). The associated data
binds each ciphertext to its endpoint and secret id: a sealed secret copied onto another
endpoint's row does not open. Same key format as the history codec, parsed by the same code.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from webhooks.codec import CodecKeyError, parse_keys
from webhooks.config import Settings
from webhooks.registry.errors import SecretKeysError

NONCE_BYTES = 12


class SecretKeyRing:
    """Seals and opens secrets; the first key (the newest) seals."""

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise SecretKeysError("the secret key ring needs at least one key")
        self._keys = {key_id: AESGCM(key) for key_id, key in keys}
        self.key_id = keys[0][0]
        """The id of the key that seals."""

    @classmethod
    def from_text(cls, text: str, source: str = "WEBHOOKS_SECRET_KEYS") -> SecretKeyRing:
        try:
            return cls(parse_keys(text, source))
        except CodecKeyError as err:
            raise SecretKeysError(str(err)) from None

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretKeyRing | None:
        """The ring from `WEBHOOKS_SECRET_KEYS` or `WEBHOOKS_SECRET_KEYS_FILE`, or None."""
        if settings.secret_keys is not None and settings.secret_keys_file is not None:
            raise SecretKeysError("set WEBHOOKS_SECRET_KEYS or WEBHOOKS_SECRET_KEYS_FILE, not both")
        if settings.secret_keys is not None:
            return cls.from_text(settings.secret_keys.get_secret_value())
        if settings.secret_keys_file is not None:
            path = settings.secret_keys_file
            try:
                text = path.read_text()
            except OSError as err:
                raise SecretKeysError(
                    f"cannot read secret keys file {path}: {err.strerror}"
                ) from None
            return cls.from_text(text, str(path))
        return None

    def seal(self, plaintext: bytes, context: str) -> tuple[str, bytes]:
        """-> (key id, nonce + ciphertext). `context` is bound as associated data."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._keys[self.key_id].encrypt(nonce, plaintext, context.encode())
        return self.key_id, nonce + sealed

    def open(self, key_id: str, blob: bytes, context: str) -> bytes:
        aead = self._keys.get(key_id)
        if aead is None:
            raise SecretKeysError(
                f"a secret is sealed with key {key_id!r}, which WEBHOOKS_SECRET_KEYS lacks"
            )
        try:
            return aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], context.encode())
        except InvalidTag:
            raise SecretKeysError(f"a secret does not authenticate with key {key_id!r}") from None
