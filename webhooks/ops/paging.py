"""Cursor pagination over Temporal visibility: the cursor is the server's page token."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from temporalio.client import Client, WorkflowExecution

T = TypeVar("T")
MAX_PAGE_SIZE = 200


class BadCursorError(ValueError):
    """A cursor that this service did not hand out."""


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T] = field(default_factory=list)
    next_cursor: str | None = None


def encode_cursor(token: bytes | None) -> str | None:
    return base64.urlsafe_b64encode(token).decode() if token else None


def decode_cursor(cursor: str | None) -> bytes | None:
    if not cursor:
        return None
    try:
        return base64.urlsafe_b64decode(cursor.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise BadCursorError("cursor is not one this API returned") from None


async def fetch_page(
    client: Client,
    query: str,
    row: Callable[[WorkflowExecution], T],
    *,
    page_size: int,
    cursor: str | None,
) -> Page[T]:
    """One page of workflows matching `query`, newest first, and the cursor to the next."""
    listing = client.list_workflows(
        query,
        page_size=max(1, min(page_size, MAX_PAGE_SIZE)),
        next_page_token=decode_cursor(cursor),
    )
    await listing.fetch_next_page()
    return Page(
        [row(wf) for wf in listing.current_page or []], encode_cursor(listing.next_page_token)
    )
