"""What an operation can refuse, in words the CLI, the console and the API each render."""

from __future__ import annotations

from typing import Any

from temporalio.client import RPCError, WorkflowHandle
from temporalio.service import RPCStatusCode


class OperationError(Exception):
    """A refusal with a message fit for the person asking."""


class NotFoundError(OperationError):
    pass


class ConflictError(OperationError):
    """The thing exists but is not in a state that allows the action."""


class InvalidInputError(OperationError):
    """The request itself is wrong (it would fail the same way however often it is sent).
    `errors` say where, as pydantic does: `{"loc": [...], "msg": ..., "type": ...}`."""

    def __init__(self, message: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.errors = errors


async def ensure_type(handle: WorkflowHandle[Any, Any], workflow_type: str, what: str) -> None:
    """`NotFoundError` unless the workflow exists and is of this type (ids are user input)."""
    try:
        described = await handle.describe()
    except RPCError as err:
        if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            raise NotFoundError(f"no {what} with id {handle.id!r}") from None
        raise
    if described.workflow_type != workflow_type:
        raise NotFoundError(f"no {what} with id {handle.id!r}")
