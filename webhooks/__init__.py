"""StreamPay outbound webhooks: the public Python API.

    from webhooks import WebhookPublisher, connect, Settings

Names are loaded on first use, so workflow code importing `webhooks.core` does not pull
in the Temporal client. Layout: `core/` pure domain, `publisher` and `config` for
publishers, `ops/` shared operations, `cli/`, `server/`, `dev/` on top.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from webhooks.config import Settings
    from webhooks.core.events import PaymentTick, StreamSettled
    from webhooks.publisher import WebhookPublisher, connect

__all__ = ["PaymentTick", "Settings", "StreamSettled", "WebhookPublisher", "connect"]

_EXPORTS = {
    "WebhookPublisher": "webhooks.publisher",
    "connect": "webhooks.publisher",
    "Settings": "webhooks.config",
    "StreamSettled": "webhooks.core.events",
    "PaymentTick": "webhooks.core.events",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'webhooks' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
