"""The names other systems rely on: workflow types and the default task queues.

One place for each, so a rename is one edit (and a replay test away from being caught).
"""

from __future__ import annotations

DELIVERY_WORKFLOW = "WebhookDelivery"
DEAD_LETTER_WORKFLOW = "DeadLetter"
CIRCUIT_WORKFLOW = "EndpointCircuit"
BULK_WORKFLOW = "BulkDeadLetterAction"
"""Bulk redeliver/discard over a filter; runs on the control task queue."""

DEFAULT_TASK_QUEUE = "webhooks"
