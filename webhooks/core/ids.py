"""Deterministic ids: the same event to the same endpoint is always the same delivery."""

from __future__ import annotations

import base64
import hashlib


def delivery_id(endpoint_id: str, event_id: str) -> str:
    """`msg_` + 26 base32 characters of SHA-256(endpoint id, event id).

    It is the workflow id (so Temporal dedupes republishing) and the `webhook-id` header
    (so customers dedupe retries). Hashing keeps it header-safe whatever the inputs hold.
    """
    digest = hashlib.sha256(f"{endpoint_id}\x00{event_id}".encode()).digest()[:16]
    return "msg_" + base64.b32encode(digest).decode().rstrip("=").lower()


def dead_letter_id(delivery_id: str, generation: int) -> str:
    """One dead letter per delivery run: a redelivery that fails again gets a new one."""
    return f"{delivery_id}-dlq-{generation}"


def circuit_id(endpoint_id: str) -> str:
    """The `EndpointCircuit` workflow of an endpoint."""
    return f"circuit-{endpoint_id}"
