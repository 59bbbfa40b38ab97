"""The custom search attributes that make deliveries findable in the UI and CLI."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

ENDPOINT_ID = SearchAttributeKey.for_keyword("WebhookEndpointId")
EVENT_TYPE = SearchAttributeKey.for_keyword("WebhookEventType")
STATUS = SearchAttributeKey.for_keyword("WebhookStatus")
ATTEMPTS = SearchAttributeKey.for_int("WebhookAttempts")
NEXT_ATTEMPT_AT = SearchAttributeKey.for_datetime("WebhookNextAttemptAt")
LAST_STATUS_CODE = SearchAttributeKey.for_int("WebhookLastStatusCode")
DEAD_LETTER_REASON = SearchAttributeKey.for_keyword("WebhookDeadLetterReason")
"""Set on `DeadLetter` workflows only: why the delivery was parked."""

ALL = (
    ENDPOINT_ID,
    EVENT_TYPE,
    STATUS,
    ATTEMPTS,
    NEXT_ATTEMPT_AT,
    LAST_STATUS_CODE,
    DEAD_LETTER_REASON,
)


def dev_server_flags() -> list[str]:
    """`temporal server start-dev` flags that register every attribute."""
    kinds = {"KEYWORD": "Keyword", "INT": "Int", "DATETIME": "Datetime"}
    flags: list[str] = []
    for key in ALL:
        flags += ["--search-attribute", f"{key.name}={kinds[key.indexed_value_type.name]}"]
    return flags
