"""Cursor pagination over Temporal visibility: the cursor is the server's page token."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from temporalio.client import Client, WorkflowExecution
from temporalio.service import RPCError, RPCStatusCode

T = TypeVar("T")
MAX_PAGE_SIZE = 200
_BAD_TOKEN = (RPCStatusCode.INVALID_ARGUMENT, RPCStatusCode.INTERNAL, RPCStatusCode.UNKNOWN)


class BadCursorError(ValueError):
    """A cursor that this service did not hand out."""


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T] = field(default_factory=list)
    next_cursor: str | None = None


def _check(token: bytes) -> bytes:
    return hashlib.sha256(b"webhooks-cursor:" + token).digest()[:8]


def encode_cursor(token: bytes | None) -> str | None:
    """The server's page token with a checksum, so a made-up cursor is refused at once
    (some visibility stores only fail on one after retrying)."""
    return base64.urlsafe_b64encode(_check(token) + token).decode() if token else None


def decode_cursor(cursor: str | None) -> bytes | None:
    if not cursor:
        return None
    try:
        token = base64.b64decode(cursor.encode("ascii"), altchars=b"-_", validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise BadCursorError("cursor is not one this API returned") from None
    check, token = token[:8], token[8:]
    if not token or not hmac.compare_digest(check, _check(token)):
        raise BadCursorError("cursor is not one this API returned")
    return token


async def fetch_page(
    client: Client,
    query: str,
    row: Callable[[WorkflowExecution], T],
    *,
    page_size: int,
    cursor: str | None,
) -> Page[T]:
    """One page of workflows matching `query`, newest first, and the cursor to the next."""
    size = max(1, min(page_size, MAX_PAGE_SIZE))
    listing = client.list_workflows(query, page_size=size, next_page_token=decode_cursor(cursor))
    try:
        await listing.fetch_next_page()
    except RPCError as err:
        # A forged token makes some visibility stores fail internally: the cursor's fault.
        if cursor is not None and err.status in _BAD_TOKEN:
            raise BadCursorError("cursor is not one this API returned") from None
        raise
    items = [row(wf) for wf in listing.current_page or []]
    return Page(items, encode_cursor(listing.next_page_token))
