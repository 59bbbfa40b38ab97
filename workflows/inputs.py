"""A workflow started without an input (`temporal workflow start` with no `--input`).

The SDK then calls the workflow with no arguments; a required parameter would raise a
TypeError in every workflow task, forever. Each workflow takes its input with a default
instead: a delivery dead-letters it as `invalid_input` (`NO_INPUT`), the others fail at
once with `missing_input` (they have nothing to act on), and a circuit starts fresh."""

from __future__ import annotations

from temporalio.api.common.v1 import Payload
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

NO_INPUT = RawValue(Payload(metadata={"encoding": b"binary/null"}))
"""The default of a raw input: no payload was given."""
INVALID_INPUT_ERROR = "InvalidInput"
"""The failure type of a run whose input could not be used (a delivery's, whose input went
to the dead-letter queue as `invalid_input`, holds its `DeliveryResult` in the details)."""


def missing_input(workflow_type: str) -> ApplicationError:
    """The error that fails a run started without an input (not retried: nothing will
    change on a retry)."""
    return ApplicationError(
        f"{workflow_type} started without an input", type=INVALID_INPUT_ERROR, non_retryable=True
    )
