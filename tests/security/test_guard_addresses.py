"""The address classifier and the policy, exhaustively: every refused class, the
IPv6 forms that embed an IPv4 address, the allowlist and the development switch."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

import pytest

from webhooks.config import Settings
from webhooks.core.destinations import DestinationPolicy, blocked_reason, embedded_ipv4

BLOCKED = {
    # IPv4
    "0.0.0.0": "unspecified",
    "0.1.2.3": "unspecified",
    "10.0.0.1": "private",
    "10.255.255.255": "private",
    "172.16.0.1": "private",
    "172.31.255.254": "private",
    "192.168.1.1": "private",
    "100.64.0.1": "cgnat",
    "100.127.255.254": "cgnat",
    "127.0.0.1": "loopback",
    "127.255.0.9": "loopback",
    "169.254.169.254": "link-local",
    "169.254.0.1": "link-local",
    "192.0.0.8": "reserved",
    "192.0.2.10": "reserved",
    "192.88.99.1": "reserved",
    "198.18.0.1": "reserved",
    "198.51.100.7": "reserved",
    "203.0.113.9": "reserved",
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast",
    "240.0.0.1": "reserved",
    "255.255.255.255": "reserved",
    # IPv6
    "::": "unspecified",
    "::1": "loopback",
    "::127.0.0.1": "reserved",
    "fc00::1": "unique-local",
    "fd12:3456:789a::1": "unique-local",
    "fe80::1": "link-local",
    "fec0::1": "site-local",
    "ff02::1": "multicast",
    "ff05::2": "multicast",
    "100::1": "reserved",
    "2001:db8::1": "reserved",
    "2001::1": "reserved",  # Teredo
    "3fff::1": "reserved",
    "64:ff9b:1::1": "reserved",
    "::ffff:0:a00:1": "reserved",  # IPv4-translated
    # IPv6 forms that reach an IPv4 host are judged as that host.
    "::ffff:127.0.0.1": "ipv4-mapped loopback",
    "::ffff:10.0.0.1": "ipv4-mapped private",
    "::ffff:169.254.169.254": "ipv4-mapped link-local",
    "::ffff:100.64.1.1": "ipv4-mapped cgnat",
    "2002:7f00:1::1": "6to4 loopback",
    "2002:a9fe:a9fe::": "6to4 link-local",
    "64:ff9b::a00:1": "nat64 private",
    "64:ff9b::7f00:1": "nat64 loopback",
}

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above CGNAT
    "172.15.255.255",
    "172.32.0.0",
    "169.253.255.255",
    "223.255.255.255",
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8",
    "2002:808:808::1",
    "64:ff9b::808:808",
]


@pytest.mark.parametrize(("address", "reason"), BLOCKED.items())
def test_every_refused_class_is_named(address: str, reason: str) -> None:
    assert blocked_reason(ip_address(address)) == reason
    assert DestinationPolicy().refusal(ip_address(address)) == reason


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert blocked_reason(ip_address(address)) is None
    assert DestinationPolicy().refusal(ip_address(address)) is None


def test_embedded_ipv4_forms() -> None:
    assert embedded_ipv4(IPv6Address("::ffff:1.2.3.4")) == (IPv4Address("1.2.3.4"), "ipv4-mapped")
    assert embedded_ipv4(IPv6Address("2002:102:304::9")) == (IPv4Address("1.2.3.4"), "6to4")
    assert embedded_ipv4(IPv6Address("64:ff9b::102:304")) == (IPv4Address("1.2.3.4"), "nat64")
    assert embedded_ipv4(IPv6Address("2606:4700::1")) is None


def test_the_default_policy_refuses_and_the_dev_switch_lifts_everything() -> None:
    strict, dev = DestinationPolicy(), DestinationPolicy(allow_private=True)
    for address in BLOCKED:
        assert strict.refusal(ip_address(address)) is not None
        assert dev.refusal(ip_address(address)) is None


def test_the_allowlist_opens_only_its_networks() -> None:
    policy = DestinationPolicy(
        allowed_networks=(IPv4Network("127.0.0.0/8"), IPv4Network("10.1.0.0/16"))
    )
    assert policy.refusal(ip_address("127.0.0.1")) is None
    assert policy.refusal(ip_address("10.1.200.3")) is None
    # An allowed IPv4 network also covers that network's IPv4-mapped IPv6 form.
    assert policy.refusal(ip_address("::ffff:10.1.0.7")) is None
    assert policy.refusal(ip_address("10.2.0.1")) == "private"
    assert policy.refusal(ip_address("169.254.169.254")) == "link-local"
    assert policy.refusal(ip_address("::1")) == "loopback"
    v6 = DestinationPolicy(allowed_networks=(IPv6Network("fd00:1::/32"),))
    assert v6.refusal(ip_address("fd00:1::5")) is None
    assert v6.refusal(ip_address("fd00:2::5")) == "unique-local"
    assert v6.refusal(ip_address("10.0.0.1")) == "private"


def test_production_defaults_refuse_private_destinations(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("WEBHOOKS_ALLOW_PRIVATE_DESTINATIONS", "WEBHOOKS_ALLOWED_NETWORKS"):
        monkeypatch.delenv(var, raising=False)
    policy = DestinationPolicy.from_settings(Settings())
    assert policy == DestinationPolicy()
    assert policy.refusal(ip_address("127.0.0.1")) == "loopback"


def test_settings_read_the_switches_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOKS_ALLOWED_NETWORKS", "127.0.0.0/8, 10.1.0.0/16,fd00::/8")
    monkeypatch.setenv("WEBHOOKS_REQUIRE_HTTPS", "true")
    monkeypatch.setenv("WEBHOOKS_ALLOW_PRIVATE_DESTINATIONS", "false")
    policy = DestinationPolicy.from_settings(Settings())
    assert policy.allowed_networks == (
        IPv4Network("127.0.0.0/8"),
        IPv4Network("10.1.0.0/16"),
        IPv6Network("fd00::/8"),
    )
    assert policy.require_https
    assert not policy.allow_private


@pytest.mark.parametrize("value", ["10.0.0.0/33", "not-a-network", "10.0.0.1/8"])
def test_a_bad_allowlist_is_refused_at_startup(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("WEBHOOKS_ALLOWED_NETWORKS", value)
    with pytest.raises(ValueError, match="allowed_networks"):
        Settings()
