"""Bad endpoint input is refused at the edge, with a message naming the field."""

from __future__ import annotations

import base64
from ipaddress import IPv4Network, ip_address
from pathlib import Path

import pytest
from pydantic import ValidationError

from webhooks.config import Settings
from webhooks.core.destinations import DestinationPolicy, IPAddress
from webhooks.registry.crypto import SecretKeyRing
from webhooks.registry.errors import InvalidDestinationError, SecretKeysError
from webhooks.registry.models import EndpointSettings, NewEndpoint, generate_secret
from webhooks.registry.store import async_url
from webhooks.registry.urls import vet_url

STRICT = DestinationPolicy()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/", "scheme must be http or https"),
        ("https://user:pw@example.com/", "must not carry credentials"),
        ("https:///path", "no host"),
        ("https://exa mple.com/", "whitespace"),
    ],
)
def test_malformed_urls(url: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        NewEndpoint(account_id="a", url=url)


@pytest.mark.parametrize(
    "name", ["webhook-signature", "Webhook-Id", "content-type", "User-Agent", "host"]
)
def test_a_custom_header_cannot_override_ours(name: str) -> None:
    with pytest.raises(ValidationError, match="cannot be overridden"):
        EndpointSettings(headers={name: "x"})


def test_custom_header_rules() -> None:
    assert EndpointSettings(headers={"X-Route": "blue"}).headers == {"X-Route": "blue"}
    with pytest.raises(ValidationError, match="not a valid HTTP token"):
        EndpointSettings(headers={"bad header": "x"})
    with pytest.raises(ValidationError, match="printable ASCII"):
        EndpointSettings(headers={"x-a": "line\r\nbreak"})
    with pytest.raises(ValidationError, match="appears twice"):
        EndpointSettings(headers={"X-A": "1", "x-a": "2"})
    with pytest.raises(ValidationError, match="at most 10"):
        EndpointSettings(headers={f"x-{i}": "v" for i in range(11)})


def test_event_types_are_deduplicated_and_never_an_empty_list() -> None:
    endpoint = NewEndpoint(account_id="a", url="https://e.com/", event_types=["b", "a", "b"])
    assert endpoint.event_types == ["a", "b"]
    with pytest.raises(ValidationError, match="at least one event type"):
        NewEndpoint(account_id="a", url="https://e.com/", event_types=[])


def test_generated_secrets() -> None:
    assert len(base64.b64decode(generate_secret(64).removeprefix("whsec_"))) == 64
    with pytest.raises(ValueError, match="24 to 64"):
        generate_secret(16)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://10.0.0.1/", "private"),
        ("http://127.0.0.1:9000/", "loopback"),
        ("http://169.254.169.254/latest", "link-local"),
        ("http://[::1]/", "loopback"),
    ],
)
async def test_private_literals_are_refused_at_create_time(url: str, reason: str) -> None:
    with pytest.raises(InvalidDestinationError, match=f"a {reason} address"):
        await vet_url(url, STRICT)


async def test_a_name_resolving_to_a_private_address_is_refused() -> None:
    async def rebinding(host: str) -> list[IPAddress]:
        return [ip_address("93.184.215.14"), ip_address("10.1.2.3")]

    with pytest.raises(InvalidDestinationError, match=r"resolves to 10\.1\.2\.3, a private"):
        await vet_url("https://sneaky.example.com/", STRICT, rebinding)
    with pytest.raises(InvalidDestinationError, match="a loopback address"):
        await vet_url("http://localhost:9/", STRICT)

    async def public(host: str) -> list[IPAddress]:
        return [ip_address("93.184.215.14")]

    await vet_url("https://fine.example.com/", STRICT, public)


async def test_unresolvable_hosts_https_rule_and_allowlist() -> None:
    async def nxdomain(host: str) -> list[IPAddress]:
        raise OSError("no such host")

    with pytest.raises(InvalidDestinationError, match="cannot resolve host"):
        await vet_url("https://nope.example.com/", STRICT, nxdomain)
    with pytest.raises(InvalidDestinationError, match="https is required"):
        await vet_url("http://93.184.215.14/", DestinationPolicy(require_https=True))
    allow = DestinationPolicy(allowed_networks=(IPv4Network("10.1.0.0/16"),))
    await vet_url("http://10.1.2.3/", allow)
    await vet_url("http://10.9.9.9/", DestinationPolicy(allow_private=True))


def test_key_ring_seals_with_the_newest_and_opens_with_any() -> None:
    k1 = "k1:" + base64.b64encode(b"1" * 32).decode()
    k2 = "k2:" + base64.b64encode(b"2" * 32).decode()
    old = SecretKeyRing.from_text(k1)
    key_id, blob = old.seal(b"secret", "ctx")
    assert key_id == "k1"
    assert b"secret" not in blob
    both = SecretKeyRing.from_text(f"{k2},{k1}")
    assert both.open(key_id, blob, "ctx") == b"secret"
    assert both.seal(b"x", "ctx")[0] == "k2"
    with pytest.raises(SecretKeysError, match="does not authenticate"):
        both.open(key_id, blob, "another endpoint")
    with pytest.raises(SecretKeysError, match="'k1', which WEBHOOKS_SECRET_KEYS lacks"):
        SecretKeyRing.from_text(k2).open(key_id, blob, "ctx")
    with pytest.raises(SecretKeysError, match="must be 32 bytes"):
        SecretKeyRing.from_text("k:" + base64.b64encode(b"short").decode())
    with pytest.raises(SecretKeysError, match="at least one key"):
        SecretKeyRing([])


def test_key_ring_from_settings(tmp_path: Path) -> None:
    text = "k1:" + base64.b64encode(b"1" * 32).decode()
    assert SecretKeyRing.from_settings(Settings()) is None
    ring = SecretKeyRing.from_settings(Settings(secret_keys=text))
    assert ring is not None
    assert ring.key_id == "k1"
    path = tmp_path / "keys"
    path.write_text(text + "\n")
    from_file = SecretKeyRing.from_settings(Settings(secret_keys_file=path))
    assert from_file is not None
    assert from_file.key_id == "k1"
    with pytest.raises(SecretKeysError, match="not both"):
        SecretKeyRing.from_settings(Settings(secret_keys=text, secret_keys_file=path))
    with pytest.raises(SecretKeysError, match="cannot read secret keys file"):
        SecretKeyRing.from_settings(Settings(secret_keys_file=tmp_path / "missing"))


def test_database_urls() -> None:
    assert async_url("postgresql://u@h/db").drivername == "postgresql+asyncpg"
    assert async_url("sqlite:///x.db").drivername == "sqlite+aiosqlite"
    with pytest.raises(ValueError, match="unsupported database 'mysql'"):
        async_url("mysql://u@h/db")
    with pytest.raises(ValueError, match="not a database URL"):
        async_url("nonsense")
    assert Settings(state_dir=Path("/s")).registry_url() == "sqlite+aiosqlite:////s/registry.db"
    assert Settings(database_url="postgresql://h/d").registry_url() == "postgresql://h/d"
