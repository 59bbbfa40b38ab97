"""Query and form fields shared by the pages and the API: filters from strings, strictly."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import TypeVar

from fastapi import HTTPException

E = TypeVar("E", bound=StrEnum)


def moment(value: str | None, field: str) -> datetime | None:
    """ISO 8601 (a browser's `datetime-local` too); naive means UTC; empty means none."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise HTTPException(422, f"{field}: not an ISO 8601 time: {value[:40]!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def optional(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def choice(kind: type[E], value: str | None) -> E | None:
    """The member named by `value`, or None for empty or unknown (a page's filter)."""
    try:
        return kind(value) if value else None
    except ValueError:
        return None
