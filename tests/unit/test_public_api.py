"""The public Python API is importable from the package itself."""

from __future__ import annotations

import pytest

import webhooks
from webhooks.config import Settings
from webhooks.core.events import PaymentTick, StreamSettled
from webhooks.publisher import WebhookPublisher, connect


def test_the_documented_names_come_from_the_package() -> None:
    from webhooks import PaymentTick as Tick
    from webhooks import Settings as Config
    from webhooks import StreamSettled as Settled
    from webhooks import WebhookPublisher as Publisher
    from webhooks import connect as conn

    assert (Publisher, conn, Config, Settled, Tick) == (
        WebhookPublisher,
        connect,
        Settings,
        StreamSettled,
        PaymentTick,
    )
    assert sorted(webhooks.__all__) == sorted(
        ["WebhookPublisher", "connect", "Settings", "StreamSettled", "PaymentTick"]
    )


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = webhooks.Nope
