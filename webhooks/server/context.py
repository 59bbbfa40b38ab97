"""What every request handler of the console shares: one Temporal client, the settings,
the authenticator and the history codec. Built once per process by `create_app`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from starlette.requests import Request
from temporalio.client import Client

from webhooks.codec import EncryptionCodec
from webhooks.config import Settings
from webhooks.publisher import WebhookPublisher
from webhooks.registry.service import EndpointRegistry
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
    registry_: EndpointRegistry | None = None
    """Opened in the app's lifespan."""
    _publisher: WebhookPublisher | None = field(default=None, repr=False)

    @property
    def temporal(self) -> Client:
        assert self.client is not None, "the console's lifespan connects the client"
        return self.client

    @property
    def registry(self) -> EndpointRegistry:
        assert self.registry_ is not None, "the console's lifespan opens the registry"
        return self.registry_

    @property
    def publisher(self) -> WebhookPublisher:
        """`POST /api/v1/events` publishes as any StreamPay service does (one per process)."""
        if self._publisher is None:
            self._publisher = WebhookPublisher(
                self.temporal, registry=self.registry, task_queue=self.settings.task_queue
            )
        return self._publisher

    async def audit(
        self,
        actor: str,
        action: str,
        target: str,
        *,
        before: Mapping[str, object] | None = None,
        after: Mapping[str, object] | None = None,
    ) -> None:
        """Record an action taken through Temporal (the registry records its own)."""
        await self.registry.record_audit(
            actor=actor, action=action, target=target, before=before, after=after
        )


def context(request: Request) -> ConsoleContext:
    ctx: ConsoleContext = request.app.state.console
    return ctx
