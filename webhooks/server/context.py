"""What every request handler of the console shares: one Temporal client, the settings,
the authenticator and the history codec. Built once per process by `create_app`."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from temporalio.client import Client

from webhooks.codec import EncryptionCodec
from webhooks.config import Settings
from webhooks.server.auth import Authenticator
from webhooks.server.settings import ConsoleSettings


@dataclass
class ConsoleContext:
    settings: Settings
    console: ConsoleSettings
    auth: Authenticator
    codec: EncryptionCodec | None
    client: Client | None = None
    """Connected in the app's lifespan (or given by tests)."""

    @property
    def temporal(self) -> Client:
        assert self.client is not None, "the console's lifespan connects the client"
        return self.client


def context(request: Request) -> ConsoleContext:
    ctx: ConsoleContext = request.app.state.console
    return ctx
