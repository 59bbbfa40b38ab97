"""Who may do what in the console and the API: three roles, each including the one below."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    VIEWER = "viewer"
    """Reads deliveries, dead letters, circuits and the audit log; never payloads."""
    OPERATOR = "operator"
    """Also retries, redelivers, discards, disables and enables."""
    ADMIN = "admin"
    """Also manages endpoints and secrets, and reads payloads."""

    def allows(self, needed: Role) -> bool:
        return _RANK[self] >= _RANK[needed]


_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}
