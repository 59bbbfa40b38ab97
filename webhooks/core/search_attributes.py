"""The custom search attributes that make deliveries findable in the UI and CLI."""

from __future__ import annotations

from typing import Any, Protocol

from temporalio.common import SearchAttributeKey, SearchAttributePair

ENDPOINT_ID = SearchAttributeKey.for_keyword("WebhookEndpointId")
EVENT_TYPE = SearchAttributeKey.for_keyword("WebhookEventType")
STATUS = SearchAttributeKey.for_keyword("WebhookStatus")
ATTEMPTS = SearchAttributeKey.for_int("WebhookAttempts")
NEXT_ATTEMPT_AT = SearchAttributeKey.for_datetime("WebhookNextAttemptAt")
LAST_STATUS_CODE = SearchAttributeKey.for_int("WebhookLastStatusCode")
DEAD_LETTER_REASON = SearchAttributeKey.for_keyword("WebhookDeadLetterReason")
"""Set on `DeadLetter` workflows only: why the delivery was parked."""
ACCOUNT_ID = SearchAttributeKey.for_keyword("WebhookAccountId")
"""The endpoint's account, on deliveries and dead letters: a customer's traffic is one query."""

ACCOUNT_PATCH = "registry-account-attribute"
"""The `workflow.patched` id under which workflows set ACCOUNT_ID: histories recorded
before the registry never did, and must replay the same."""

ALL = (
    ENDPOINT_ID,
    EVENT_TYPE,
    STATUS,
    ATTEMPTS,
    NEXT_ATTEMPT_AT,
    LAST_STATUS_CODE,
    DEAD_LETTER_REASON,
    ACCOUNT_ID,
)


class _Delivery(Protocol):
    @property
    def endpoint_id(self) -> str: ...
    @property
    def event_type(self) -> str: ...
    @property
    def account_id(self) -> str | None: ...


def identity(request: _Delivery, *, account: bool = True) -> list[SearchAttributePair[Any]]:
    """What a delivery (or its dead letter) is about: endpoint, event type and account.
    `account=False` leaves the account out (workflow code replaying a history recorded
    before the attribute existed)."""
    pairs: list[SearchAttributePair[Any]] = [
        SearchAttributePair(ENDPOINT_ID, request.endpoint_id),
        SearchAttributePair(EVENT_TYPE, request.event_type),
    ]
    if account and request.account_id is not None:
        pairs.append(SearchAttributePair(ACCOUNT_ID, request.account_id))
    return pairs


def dev_server_flags() -> list[str]:
    """`temporal server start-dev` flags that register every attribute."""
    kinds = {"KEYWORD": "Keyword", "INT": "Int", "DATETIME": "Datetime"}
    flags: list[str] = []
    for key in ALL:
        flags += ["--search-attribute", f"{key.name}={kinds[key.indexed_value_type.name]}"]
    return flags
