"""Standard Webhooks signatures: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.

Every attempt signs the identical body bytes with a fresh timestamp: receivers reject
timestamps older than about five minutes, and a body that changed between attempts under
the same `webhook-id` would let a replayed or retried event mean two different things.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"


class InvalidSecretError(ValueError):
    """A secret that is not `whsec_` followed by base64 of at least 16 bytes."""


def secret_key(secret: str) -> bytes:
    """The raw HMAC key of a `whsec_<base64>` secret."""
    if not secret.startswith(SECRET_PREFIX):
        raise InvalidSecretError(f"a signing secret must start with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error as err:
        raise InvalidSecretError("a signing secret must be whsec_ followed by base64") from err
    if len(key) < 16:
        raise InvalidSecretError("a signing secret must hold at least 16 bytes (24 is usual)")
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,` signature entry."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: one entry per active key, so rotation never breaks."""
    return " ".join(sign(key, msg_id, timestamp, body) for key in keys)
