"""The file secret store: parsing, validation, and reloading on change."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from webhooks.secrets import (
    FileSecretStore,
    SecretStoreError,
    UnknownSecretRefError,
    parse_secrets,
)

KEY_A = b"secret-store-key-aaaaaaaa"
KEY_B = b"secret-store-key-bbbbbbbb"
KEY_C = b"secret-store-key-cccccccc"
SECRET_A = "whsec_" + base64.b64encode(KEY_A).decode()
SECRET_B = "whsec_" + base64.b64encode(KEY_B).decode()
SECRET_C = "whsec_" + base64.b64encode(KEY_C).decode()


def write(path: Path, content: object) -> Path:
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def touch_newer(path: Path) -> None:
    """Give the file a clearly different mtime: filesystems may have coarse timestamps."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))


def test_parse_single_and_list_secrets() -> None:
    keys = parse_secrets(json.dumps({"one": SECRET_A, "many": [SECRET_B, SECRET_A]}))
    assert keys == {"one": (KEY_A,), "many": (KEY_B, KEY_A)}


def test_parse_empty_object_is_an_empty_store() -> None:
    assert parse_secrets("{}") == {}


def test_store_reads_single_and_list_secrets(tmp_path: Path) -> None:
    path = write(tmp_path / "s.json", {"default": SECRET_A, "rotating": [SECRET_B, SECRET_A]})
    store = FileSecretStore(path)
    assert store.keys("default") == (KEY_A,)
    assert store.keys("rotating") == (KEY_B, KEY_A)


def test_store_accepts_a_str_path(tmp_path: Path) -> None:
    path = write(tmp_path / "s.json", {"default": SECRET_A})
    assert FileSecretStore(str(path)).keys("default") == (KEY_A,)


def test_contains(tmp_path: Path) -> None:
    store = FileSecretStore(write(tmp_path / "s.json", {"default": SECRET_A}))
    assert "default" in store
    assert "missing" not in store
    assert 42 not in store


def test_unknown_ref(tmp_path: Path) -> None:
    store = FileSecretStore(write(tmp_path / "s.json", {"default": SECRET_A}))
    with pytest.raises(UnknownSecretRefError) as info:
        store.keys("nope")
    assert str(info.value) == "unknown secret_ref 'nope'"


def test_reloads_when_the_file_changes(tmp_path: Path) -> None:
    path = write(tmp_path / "s.json", {"default": SECRET_A})
    store = FileSecretStore(path)
    assert store.keys("default") == (KEY_A,)
    write(path, {"default": [SECRET_B, SECRET_A], "new": SECRET_C})
    touch_newer(path)
    assert store.keys("default") == (KEY_B, KEY_A)
    assert "new" in store
    assert store.keys("new") == (KEY_C,)


def test_no_reload_while_the_mtime_is_unchanged(tmp_path: Path) -> None:
    path = write(tmp_path / "s.json", {"default": SECRET_A})
    store = FileSecretStore(path)
    before = path.stat()
    write(path, {"default": SECRET_B})
    # Same mtime as when loaded: the store keeps what it has without re-reading.
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert store.keys("default") == (KEY_A,)
    touch_newer(path)
    assert store.keys("default") == (KEY_B,)


def test_removed_ref_disappears_on_reload(tmp_path: Path) -> None:
    path = write(tmp_path / "s.json", {"default": SECRET_A, "old": SECRET_B})
    store = FileSecretStore(path)
    assert "old" in store
    write(path, {"default": SECRET_A})
    touch_newer(path)
    assert "old" not in store


def test_a_broken_edit_fails_loudly_then_recovers(tmp_path: Path) -> None:
    path = write(tmp_path / "s.json", {"default": SECRET_A})
    store = FileSecretStore(path)
    write(path, "{not json")
    touch_newer(path)
    with pytest.raises(SecretStoreError, match="not valid JSON"):
        store.keys("default")
    write(path, {"default": SECRET_C})
    touch_newer(path)
    assert store.keys("default") == (KEY_C,)


def test_invalid_json(tmp_path: Path) -> None:
    path = write(tmp_path / "s.json", '{"default": ')
    with pytest.raises(SecretStoreError, match="not valid JSON") as info:
        FileSecretStore(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("content", ["[]", '"whsec_x"', "42", "null"])
def test_not_an_object(tmp_path: Path, content: str) -> None:
    with pytest.raises(SecretStoreError, match="must be a JSON object"):
        FileSecretStore(write(tmp_path / "s.json", content))


@pytest.mark.parametrize(
    "value",
    [[], 42, None, {"k": SECRET_A}, [SECRET_A, 42]],
    ids=["empty-list", "number", "null", "object", "list-with-non-string"],
)
def test_ref_must_be_a_secret_or_a_list_of_secrets(value: object) -> None:
    with pytest.raises(SecretStoreError, match="'bad' must be a secret or a list of secrets"):
        parse_secrets(json.dumps({"good": SECRET_A, "bad": value}))


@pytest.mark.parametrize(
    "secret",
    [
        base64.b64encode(b"a-perfectly-long-key-body").decode(),
        "whsec_!!definitely-not-base64!!",
        "whsec_" + base64.b64encode(b"tiny").decode(),
    ],
    ids=["no-prefix", "bad-base64", "too-short"],
)
def test_bad_secret_names_the_ref_never_the_secret(tmp_path: Path, secret: str) -> None:
    path = write(tmp_path / "s.json", {"default": SECRET_A, "partner-7": [SECRET_B, secret]})
    with pytest.raises(SecretStoreError) as info:
        FileSecretStore(path)
    message = str(info.value)
    assert "'partner-7'" in message
    assert "signing secret" in message
    assert secret not in message
    assert secret.removeprefix("whsec_") not in message
    assert SECRET_B not in message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(SecretStoreError, match="cannot read secrets file") as info:
        FileSecretStore(path)
    assert str(path) in str(info.value)


def test_unreadable_file(tmp_path: Path) -> None:
    # A directory where the file should be: unreadable as text for any user, root included.
    path = tmp_path / "s.json"
    path.mkdir()
    with pytest.raises(SecretStoreError, match="cannot read secrets file") as info:
        FileSecretStore(path)
    assert "Is a directory" in str(info.value)


def test_file_deleted_after_load(tmp_path: Path) -> None:
    path = write(tmp_path / "s.json", {"default": SECRET_A})
    store = FileSecretStore(path)
    path.unlink()
    with pytest.raises(SecretStoreError, match="No such file"):
        store.keys("default")
    with pytest.raises(SecretStoreError):
        _ = "default" in store
