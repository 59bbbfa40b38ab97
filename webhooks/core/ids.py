"""Deterministic ids: the same event to the same endpoint is always the same delivery."""

from __future__ import annotations

import base64
import hashlib
import json


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


def content_digest(body: str) -> str:
    """What makes a republish "the same event": SHA-256 of the body without its
    `timestamp` (a publisher retrying a call may stamp it anew), in canonical JSON.

    Compared when an event id is published to an endpoint again: same digest, the existing
    delivery stands; another digest is a conflict. A body that is not a JSON object (from a
    non-Python publisher) is digested as it is.
    """
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        payload.pop("timestamp", None)
        body = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(body.encode()).hexdigest()
