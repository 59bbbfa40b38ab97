"""Standard Webhooks signatures, checked against independent verifiers."""

from __future__ import annotations

import base64
import time

import pytest
import svix.webhooks
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from webhooks.core.signing import InvalidSecretError, secret_key, sign, signature_header

SECRET = "whsec_" + base64.b64encode(b"unit-test-signing-key-24b").decode()
OTHER = "whsec_" + base64.b64encode(b"another-signing-key-0123456").decode()
BODY = '{"id":"evt_1","type":"stream.settled","timestamp":"2026-11-28T12:00:00Z","data":{}}'


def headers(msg_id: str, timestamp: int, signature: str) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }


def test_secret_key_decodes_the_base64_after_the_prefix() -> None:
    assert secret_key(SECRET) == b"unit-test-signing-key-24b"


def test_signature_verifies_with_standardwebhooks() -> None:
    now = int(time.time())
    signature = signature_header([secret_key(SECRET)], "msg_1", now, BODY.encode())
    assert signature.startswith("v1,")
    assert " " not in signature
    payload = Webhook(SECRET).verify(BODY, headers("msg_1", now, signature))
    assert payload["type"] == "stream.settled"


def test_signature_matches_standardwebhooks_own_signer() -> None:
    from datetime import UTC, datetime

    now = int(time.time())
    expected = Webhook(SECRET).sign("msg_1", datetime.fromtimestamp(now, UTC), BODY)
    assert sign(secret_key(SECRET), "msg_1", now, BODY.encode()) == expected


def test_non_ascii_body_is_signed_as_utf8_bytes() -> None:
    body = '{"data":{"name":"Zoë ✓"}}'
    now = int(time.time())
    signature = signature_header([secret_key(SECRET)], "msg_u", now, body.encode())
    assert Webhook(SECRET).verify(body, headers("msg_u", now, signature)) == {
        "data": {"name": "Zoë ✓"}
    }


@pytest.mark.parametrize(
    ("msg_id", "body", "offset"),
    [("msg_2", BODY, 0), ("msg_1", BODY + " ", 0), ("msg_1", BODY, 1)],
    ids=["other-id", "other-body", "other-timestamp"],
)
def test_signature_binds_id_timestamp_and_body(msg_id: str, body: str, offset: int) -> None:
    now = int(time.time())
    signature = signature_header([secret_key(SECRET)], "msg_1", now, BODY.encode())
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body, headers(msg_id, now + offset, signature))


def test_signature_fails_with_another_secret() -> None:
    now = int(time.time())
    signature = signature_header([secret_key(SECRET)], "msg_1", now, BODY.encode())
    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER).verify(BODY, headers("msg_1", now, signature))


def test_multiple_keys_give_one_entry_each_and_each_verifies() -> None:
    now = int(time.time())
    keys = [secret_key(SECRET), secret_key(OTHER)]
    signature = signature_header(keys, "msg_1", now, BODY.encode())
    entries = signature.split(" ")
    assert len(entries) == 2
    assert all(entry.startswith("v1,") for entry in entries)
    # Newest first, and each entry alone verifies with its own secret.
    for secret, entry in zip([SECRET, OTHER], entries, strict=True):
        assert entry == sign(secret_key(secret), "msg_1", now, BODY.encode())
        Webhook(secret).verify(BODY, headers("msg_1", now, entry))
    # A receiver holding either secret accepts the whole header (rotation never breaks).
    for secret in (SECRET, OTHER):
        Webhook(secret).verify(BODY, headers("msg_1", now, signature))


def test_signature_verifies_with_svix() -> None:
    # svix is a declared test dependency: imported directly, a broken install fails here
    # instead of skipping.
    now = int(time.time())
    signature = signature_header(
        [secret_key(OTHER), secret_key(SECRET)], "msg_1", now, BODY.encode()
    )
    svix_headers = headers("msg_1", now, signature)
    # svix raises on a bad signature (and returns None or the payload, by version).
    svix.webhooks.Webhook(SECRET).verify(BODY, svix_headers)
    svix.webhooks.Webhook(OTHER).verify(BODY, svix_headers)
    stranger = "whsec_" + base64.b64encode(b"not-one-of-the-signing-keys").decode()
    with pytest.raises(svix.webhooks.WebhookVerificationError):
        svix.webhooks.Webhook(stranger).verify(BODY, svix_headers)


@pytest.mark.parametrize(
    "secret",
    [
        base64.b64encode(b"x" * 24).decode(),  # no prefix
        "WHSEC_" + base64.b64encode(b"x" * 24).decode(),  # prefix is case-sensitive
        "whsec_",  # nothing after the prefix
        "whsec_not base64!",
        "whsec_" + base64.b64encode(b"x" * 24).decode()[:-1],  # broken padding
        "whsec_" + base64.b64encode(b"x" * 15).decode(),  # too short
    ],
    ids=["no-prefix", "wrong-case", "empty", "bad-base64", "bad-padding", "too-short"],
)
def test_invalid_secrets_are_rejected(secret: str) -> None:
    with pytest.raises(InvalidSecretError, match="signing secret"):
        secret_key(secret)


def test_sixteen_bytes_is_enough() -> None:
    assert len(secret_key("whsec_" + base64.b64encode(b"k" * 16).decode())) == 16


def test_invalid_secret_error_never_contains_the_secret() -> None:
    secret = "whsec_" + base64.b64encode(b"short").decode()
    with pytest.raises(InvalidSecretError) as info:
        secret_key(secret)
    assert secret not in str(info.value)
    assert secret[6:] not in str(info.value)
