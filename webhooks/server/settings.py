"""The console's own configuration: users, API tokens, the proxy mode, sessions, CORS.

    WEBHOOKS_CONSOLE__USERS='[{"name": "ada", "password_hash": "$argon2id$...", "role": "admin"}]'
    WEBHOOKS_CONSOLE__TOKENS='[{"name": "backend", "token_hash": "sha256:...", "role": "admin"}]'
    WEBHOOKS_CONSOLE__USERS_FILE=/run/secrets/console-users.json  # {"users": [], "tokens": []}

Only hashes are configured: `webhooks console hash-password` and `webhooks console new-token`
make them. Nothing here is ever logged or shown.
"""

from __future__ import annotations

import json
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from webhooks.core.roles import Role

DEFAULT_CODEC_ORIGINS = ("http://localhost:8233", "http://127.0.0.1:8233")
"""The dev server's Web UI."""


class UserConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200)
    password_hash: SecretStr
    """An argon2 hash (`$argon2id$...`), from `webhooks console hash-password`."""
    role: Role


class TokenConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200)
    token_hash: SecretStr
    """`sha256:<hex>` of the token, from `webhooks console new-token`."""
    role: Role


class Principals(BaseModel):
    """The shape of `WEBHOOKS_CONSOLE__USERS_FILE`."""

    model_config = ConfigDict(extra="forbid")

    users: list[UserConfig] = []
    tokens: list[TokenConfig] = []


class ConsoleSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WEBHOOKS_CONSOLE__", extra="ignore")

    users: list[UserConfig] = []
    tokens: list[TokenConfig] = []
    users_file: Path | None = None
    session_secret: SecretStr | None = None
    """Signs session cookies; random per process when unset (sessions end at restart)."""
    session_hours: float = Field(default=8, gt=0, le=24 * 30)
    proxy_user_header: str | None = None
    """Trusted-proxy mode: the header carrying the signed-in user (e.g. `X-Forwarded-User`)."""
    proxy_roles: dict[str, Role] = {}
    """Trusted-proxy mode: user -> role; a user not listed gets `proxy_default_role`."""
    proxy_default_role: Role | None = None
    trusted_proxies: Annotated[tuple[IPv4Network | IPv6Network, ...], NoDecode] = (
        ip_network("127.0.0.1/32"),
        ip_network("::1/128"),
    )
    """Only requests from these addresses may assert an identity by header."""
    codec_origins: Annotated[tuple[str, ...], NoDecode] = DEFAULT_CODEC_ORIGINS
    """Web UI origins allowed by CORS on /codec (comma-separated)."""
    payload_role: Role = Role.ADMIN
    """The least role that sees payloads (console, API and /codec/decode)."""

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_networks(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(ip_network(v.strip()) for v in value.split(",") if v.strip())
        return value

    @field_validator("codec_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(v.strip().rstrip("/") for v in value.split(",") if v.strip())
        return value

    def principals(self) -> Principals:
        """Users and tokens from the environment and the users file together."""
        found = Principals(users=self.users, tokens=self.tokens)
        if self.users_file is None:
            return found
        try:
            loaded = Principals.model_validate(json.loads(self.users_file.read_text()))
        except OSError as err:
            raise ValueError(f"cannot read {self.users_file}: {err.strerror}") from None
        except json.JSONDecodeError as err:
            raise ValueError(f"{self.users_file} is not JSON: {err.msg}") from None
        except ValidationError as err:
            # Locations and messages only: the inputs may be hashes.
            where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
            raise ValueError(f"{self.users_file} is not a valid users file: {where}") from None
        return Principals(users=found.users + loaded.users, tokens=found.tokens + loaded.tokens)
