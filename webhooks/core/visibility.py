"""Building Temporal visibility queries safely: every value is quoted, never pasted."""

from __future__ import annotations


def quote(value: str) -> str:
    """A visibility-query string literal: `it's` -> `'it\\'s'` (backslashes escaped too)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
