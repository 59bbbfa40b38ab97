"""The old secrets file, as `webhooks endpoint import` reads it: every form it accepted,
and every mistake named by its ref, never by the secret."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from webhooks.registry.legacy import SecretsFileError, parse_entries

KEY_A = b"secret-store-key-aaaaaaaa"
KEY_B = b"secret-store-key-bbbbbbbb"
SECRET_A = "whsec_" + base64.b64encode(KEY_A).decode()
SECRET_B = "whsec_" + base64.b64encode(KEY_B).decode()


def test_single_and_list_secrets_newest_first() -> None:
    entries = parse_entries(json.dumps({"one": SECRET_A, "many": [SECRET_B, SECRET_A]}))
    assert entries == {"one": ((KEY_A, None),), "many": ((KEY_B, None), (KEY_A, None))}


def test_an_empty_object_is_an_empty_file() -> None:
    assert parse_entries("{}") == {}


def test_expiries() -> None:
    text = json.dumps(
        {"r": [{"secret": SECRET_B}, {"secret": SECRET_A, "expires_at": "2026-12-01T00:00:00Z"}]}
    )
    assert parse_entries(text) == {"r": ((KEY_B, None), (KEY_A, datetime(2026, 12, 1, tzinfo=UTC)))}


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"secret": SECRET_A, "expires_at": "2026-12-01T00:00:00"}, "with a zone"),
        ({"secret": SECRET_A, "expires_at": "soon"}, "with a zone"),
        ({"secret": SECRET_A, "expires_at": 5}, "with a zone"),
        ({"secret": SECRET_A, "note": "x"}, "unknown field"),
        ({"nope": SECRET_A}, "must be a secret or a list"),
    ],
)
def test_bad_entries(item: object, message: str) -> None:
    with pytest.raises(SecretsFileError, match=message):
        parse_entries(json.dumps({"r": [item]}))


def test_invalid_json_names_the_source() -> None:
    with pytest.raises(SecretsFileError, match=r"old\.json: not valid JSON"):
        parse_entries('{"default": ', "old.json")


@pytest.mark.parametrize("content", ["[]", '"whsec_x"', "42", "null"])
def test_not_an_object(content: str) -> None:
    with pytest.raises(SecretsFileError, match="must be a JSON object"):
        parse_entries(content)


@pytest.mark.parametrize(
    "value",
    [[], 42, None, {"k": SECRET_A}, [SECRET_A, 42]],
    ids=["empty-list", "number", "null", "object", "list-with-non-string"],
)
def test_ref_must_be_a_secret_or_a_list_of_secrets(value: object) -> None:
    with pytest.raises(SecretsFileError, match="'bad' must be a secret or a list of secrets"):
        parse_entries(json.dumps({"good": SECRET_A, "bad": value}))


@pytest.mark.parametrize(
    "secret",
    [
        base64.b64encode(b"a-perfectly-long-key-body").decode(),
        "whsec_!!definitely-not-base64!!",
        "whsec_" + base64.b64encode(b"tiny").decode(),
    ],
    ids=["no-prefix", "bad-base64", "too-short"],
)
def test_bad_secret_names_the_ref_never_the_secret(secret: str) -> None:
    with pytest.raises(SecretsFileError) as info:
        parse_entries(json.dumps({"default": SECRET_A, "partner-7": [SECRET_B, secret]}))
    message = str(info.value)
    assert "'partner-7'" in message
    assert "signing secret" in message
    assert secret not in message
    assert secret.removeprefix("whsec_") not in message
    assert SECRET_B not in message
