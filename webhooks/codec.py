"""Encrypted history: a Temporal `PayloadCodec` with AES-256-GCM.

Every payload Temporal stores for us (event bodies, workflow inputs and results, attempt
excerpts, query answers, failure messages) is encrypted by the client and the worker
before it leaves the process, so the Temporal database, its backups and its Web UI see
only ciphertext. The key never reaches the server; operators who hold it can read payloads
through the console's codec endpoint (`webhooks console`, `/codec`).

Keys have ids, and the id travels in each payload's metadata. Several keys can be loaded:
the first one (the newest) encrypts, any of them decrypts, so a key is rotated by putting
a new one first and dropping the old one once nothing encrypted with it is retained.

    WEBHOOKS_CODEC_KEYS="k2:<base64 of 32 bytes>,k1:<base64 of 32 bytes>"
    WEBHOOKS_CODEC_KEYS_FILE=/run/secrets/webhooks-codec-keys   # same format, or one per line
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

if TYPE_CHECKING:
    from webhooks.config import Settings

ENCODING = b"binary/encrypted"
"""The `encoding` metadata of an encrypted payload (the convention of Temporal's samples)."""
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12
_KEY_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class CodecKeyError(ValueError):
    """Keys that cannot be loaded, or a payload that no loaded key can decrypt. Messages
    name key ids, never key material."""


def generate_key() -> str:
    """A fresh key in the `WEBHOOKS_CODEC_KEYS` format's base64."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def parse_keys(text: str, source: str = "codec keys") -> list[tuple[str, bytes]]:
    """`"k2:<base64>,k1:<base64>"` (commas or new lines; `#` starts a comment line)
    -> [(key id, 32-byte key)], newest first."""
    keys: list[tuple[str, bytes]] = []
    for line in text.splitlines():
        if line.strip().startswith("#"):
            continue
        for item in line.split(","):
            item = item.strip()
            if not item:
                continue
            key_id, sep, encoded = item.partition(":")
            key_id = key_id.strip()
            if not sep or not _KEY_ID_RE.fullmatch(key_id):
                raise CodecKeyError(
                    f"{source}: each key must be `id:base64`, with an id of letters, "
                    "digits, '.', '_' or '-'"
                )
            try:
                key = base64.b64decode(encoded.strip(), validate=True)
            except binascii.Error:
                raise CodecKeyError(f"{source}: key {key_id!r} is not valid base64") from None
            if len(key) != 32:
                raise CodecKeyError(
                    f"{source}: key {key_id!r} must be 32 bytes (AES-256), not {len(key)}"
                )
            if any(key_id == known for known, _ in keys):
                raise CodecKeyError(f"{source}: key id {key_id!r} appears twice")
            keys.append((key_id, key))
    if not keys:
        raise CodecKeyError(f"{source}: no keys")
    return keys


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over each whole serialized payload (its metadata included, so even the
    payload's type is hidden). The key id is bound as associated data."""

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise CodecKeyError("an encryption codec needs at least one key")
        self._keys = {key_id: AESGCM(key) for key_id, key in keys}
        self.key_id = keys[0][0]
        """The id of the key that encrypts."""

    @classmethod
    def from_text(cls, text: str, source: str = "codec keys") -> EncryptionCodec:
        return cls(parse_keys(text, source))

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        key_id = self.key_id.encode()
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._keys[self.key_id].encrypt(nonce, payload.SerializeToString(), key_id)
        return Payload(metadata={"encoding": ENCODING, KEY_ID: key_id}, data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        # Payloads written before encryption was turned on stay readable.
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        key_id = payload.metadata.get(KEY_ID, b"").decode("utf-8", "replace")
        aead = self._keys.get(key_id)
        if aead is None:
            raise CodecKeyError(f"payload encrypted with key {key_id!r}, which is not loaded")
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            plain = aead.decrypt(nonce, sealed, key_id.encode())
        except InvalidTag:
            raise CodecKeyError(f"payload does not authenticate with key {key_id!r}") from None
        return Payload.FromString(plain)


def codec_from_settings(settings: Settings) -> EncryptionCodec | None:
    """The codec the settings configure (`WEBHOOKS_CODEC_KEYS` or `_FILE`), or None."""
    if settings.codec_keys is not None and settings.codec_keys_file is not None:
        raise CodecKeyError("set WEBHOOKS_CODEC_KEYS or WEBHOOKS_CODEC_KEYS_FILE, not both")
    if settings.codec_keys is not None:
        return EncryptionCodec.from_text(settings.codec_keys.get_secret_value(), "codec keys")
    if settings.codec_keys_file is not None:
        path = settings.codec_keys_file
        try:
            text = path.read_text()
        except OSError as err:
            raise CodecKeyError(f"cannot read codec keys file {path}: {err.strerror}") from None
        return EncryptionCodec.from_text(text, str(path))
    return None
