"""The history codec: AES-256-GCM with key ids, rotation, and clear errors."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DefaultFailureConverterWithEncodedAttributes

from webhooks.codec import (
    ENCODING,
    KEY_ID,
    CodecKeyError,
    EncryptionCodec,
    codec_from_settings,
    generate_key,
    parse_keys,
)
from webhooks.config import Settings
from webhooks.publisher import data_converter

K1, K2 = bytes(range(32)), bytes(range(32, 64))
K1_TEXT, K2_TEXT = base64.b64encode(K1).decode(), base64.b64encode(K2).decode()
PLAIN = Payload(metadata={"encoding": b"json/plain"}, data=b'{"card":"4242 4242 4242 4242"}')


async def test_round_trip_hides_data_and_metadata() -> None:
    codec = EncryptionCodec([("k1", K1)])
    [sealed] = await codec.encode([PLAIN])
    assert dict(sealed.metadata) == {"encoding": ENCODING, KEY_ID: b"k1"}
    assert b"4242" not in sealed.SerializeToString()
    assert b"json/plain" not in sealed.data
    assert await codec.decode([sealed]) == [PLAIN]


async def test_every_encryption_uses_a_fresh_nonce() -> None:
    codec = EncryptionCodec([("k1", K1)])
    first, second = await codec.encode([PLAIN, PLAIN])
    assert first.data != second.data


async def test_rotation_encrypts_with_the_newest_and_decrypts_with_any() -> None:
    old = EncryptionCodec([("k1", K1)])
    [sealed_by_old] = await old.encode([PLAIN])
    rotated = EncryptionCodec.from_text(f"k2:{K2_TEXT}, k1:{K1_TEXT}")
    assert rotated.key_id == "k2"
    [sealed_by_new] = await rotated.encode([PLAIN])
    assert sealed_by_new.metadata[KEY_ID] == b"k2"
    assert await rotated.decode([sealed_by_old, sealed_by_new]) == [PLAIN, PLAIN]
    # The old deployment cannot read what the new key wrote: clear error, key id only.
    with pytest.raises(CodecKeyError, match="encrypted with key 'k2', which is not loaded"):
        await old.decode([sealed_by_new])


async def test_tampering_or_a_wrong_key_under_the_same_id_is_detected() -> None:
    codec = EncryptionCodec([("k1", K1)])
    [sealed] = await codec.encode([PLAIN])
    tampered = Payload(metadata=sealed.metadata, data=sealed.data[:-1] + b"\x00")
    with pytest.raises(CodecKeyError, match="does not authenticate with key 'k1'"):
        await codec.decode([tampered])
    impostor = EncryptionCodec([("k1", K2)])
    with pytest.raises(CodecKeyError, match="does not authenticate"):
        await impostor.decode([sealed])
    # The key id is bound too: relabelling a payload with another loaded key's id fails.
    both = EncryptionCodec([("k2", K1), ("k1", K1)])
    relabelled = Payload(metadata={"encoding": ENCODING, KEY_ID: b"k2"}, data=sealed.data)
    with pytest.raises(CodecKeyError, match="does not authenticate with key 'k2'"):
        await both.decode([relabelled])


async def test_payloads_written_before_encryption_stay_readable() -> None:
    codec = EncryptionCodec([("k1", K1)])
    assert await codec.decode([PLAIN]) == [PLAIN]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no keys"),
        ("# only a comment\n", "no keys"),
        (K1_TEXT, "each key must be `id:base64`"),
        (f"bad id:{K1_TEXT}", "each key must be `id:base64`"),
        ("k1:not*base64", "key 'k1' is not valid base64"),
        (f"k1:{base64.b64encode(b'short').decode()}", "key 'k1' must be 32 bytes (AES-256), not 5"),
        (f"k1:{K1_TEXT},k1:{K2_TEXT}", "key id 'k1' appears twice"),
    ],
)
def test_bad_keys_are_refused_without_showing_key_material(text: str, message: str) -> None:
    with pytest.raises(CodecKeyError) as info:
        parse_keys(text)
    assert message in str(info.value)
    assert K1_TEXT not in str(info.value)
    assert K2_TEXT not in str(info.value)


def test_a_key_file_may_list_one_key_per_line_with_comments(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# newest first\nk2:{K2_TEXT}\n\nk1:{K1_TEXT}\n")
    codec = codec_from_settings(Settings(codec_keys_file=path))
    assert codec is not None
    assert codec.key_id == "k2"
    assert parse_keys(path.read_text()) == [("k2", K2), ("k1", K1)]


def test_settings_choose_the_codec(tmp_path: Path) -> None:
    assert codec_from_settings(Settings()) is None
    from_env = codec_from_settings(Settings(codec_keys=f"k1:{K1_TEXT}"))
    assert from_env is not None
    assert from_env.key_id == "k1"
    with pytest.raises(CodecKeyError, match="not both"):
        codec_from_settings(Settings(codec_keys=f"k1:{K1_TEXT}", codec_keys_file=tmp_path))
    with pytest.raises(CodecKeyError, match="cannot read codec keys file"):
        codec_from_settings(Settings(codec_keys_file=tmp_path / "missing"))
    with pytest.raises(CodecKeyError, match="at least one key"):
        EncryptionCodec([])


def test_generated_keys_load() -> None:
    key = generate_key()
    assert parse_keys(f"local:{key}")[0][0] == "local"


def test_the_data_converter_encrypts_only_when_keys_are_configured() -> None:
    assert data_converter(Settings()) is pydantic_data_converter
    converter = data_converter(Settings(codec_keys=f"k1:{K1_TEXT}"))
    assert isinstance(converter.payload_codec, EncryptionCodec)
    assert converter.payload_converter_class is pydantic_data_converter.payload_converter_class
    assert converter.failure_converter_class is DefaultFailureConverterWithEncodedAttributes
