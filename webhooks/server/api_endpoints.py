"""The management API's endpoints and audit log (the registry), for StreamPay's backend.

Changing an endpoint needs `admin` (disable and enable: `operator`); `version` makes a
concurrent edit a 409, never a lost write. A new or rotated secret is in that one answer.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field, SecretStr

from webhooks.core.roles import Role
from webhooks.registry.models import (
    DEFAULT_OVERLAP_SECONDS,
    AuditEntry,
    Endpoint,
    EndpointChanges,
    EndpointState,
    NewEndpoint,
)
from webhooks.server.api import errors
from webhooks.server.auth import Principal
from webhooks.server.context import ConsoleContext, context
from webhooks.server.deps import api_role

router = APIRouter(prefix="/api/v1", responses=errors())
Viewer = Annotated[Principal, Depends(api_role(Role.VIEWER))]
Operator = Annotated[Principal, Depends(api_role(Role.OPERATOR))]
Admin = Annotated[Principal, Depends(api_role(Role.ADMIN))]
Ctx = Annotated[ConsoleContext, Depends(context)]


class EndpointList(BaseModel):
    items: list[Endpoint]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class WithSecret(BaseModel):
    endpoint: Endpoint
    secret: str = Field(description="The new `whsec_` secret: shown in this answer only.")


class EndpointUpdate(EndpointChanges):
    version: int | None = Field(default=None, description="The version you read (409 if stale).")


class DisableIn(BaseModel):
    reason: str = Field(default="disabled by an operator", min_length=1, max_length=500)
    version: int | None = None


class EnableIn(BaseModel):
    version: int | None = None


class RotateIn(BaseModel):
    overlap_seconds: float = Field(default=DEFAULT_OVERLAP_SECONDS, ge=0, le=30 * 86400)
    version: int | None = None


class AuditList(BaseModel):
    items: list[AuditEntry]


def _shown(secret: SecretStr) -> str:
    return secret.get_secret_value()


@router.get("/endpoints", response_model=EndpointList)
async def list_endpoints(
    who: Viewer,
    ctx: Ctx,
    account_id: Annotated[str | None, Query(max_length=200)] = None,
    state: EndpointState | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> EndpointList:
    found = await ctx.registry.list_endpoints(
        account_id=account_id or None, state=state, limit=limit, after_id=cursor or None
    )
    return EndpointList(items=found, next_cursor=found[-1].id if len(found) == limit else None)


@router.post("/endpoints", status_code=201, response_model=WithSecret, responses=errors(409))
async def create_endpoint(body: NewEndpoint, who: Admin, ctx: Ctx) -> WithSecret:
    created = await ctx.registry.create(body, actor=who.name)
    return WithSecret(endpoint=created.endpoint, secret=_shown(created.secret))


@router.get("/endpoints/{endpoint_id}", response_model=Endpoint, responses=errors(404))
async def get_endpoint(endpoint_id: str, who: Viewer, ctx: Ctx) -> Endpoint:
    return await ctx.registry.get(endpoint_id)


@router.patch("/endpoints/{endpoint_id}", response_model=Endpoint, responses=errors(404, 409))
async def update_endpoint(endpoint_id: str, body: EndpointUpdate, who: Admin, ctx: Ctx) -> Endpoint:
    given = body.model_fields_set - {"version"}
    changes = EndpointChanges(**{name: getattr(body, name) for name in given})
    return await ctx.registry.update(
        endpoint_id, changes, expected_version=body.version, actor=who.name
    )


@router.post(
    "/endpoints/{endpoint_id}/disable", response_model=Endpoint, responses=errors(404, 409)
)
async def disable_endpoint(endpoint_id: str, body: DisableIn, who: Operator, ctx: Ctx) -> Endpoint:
    return await ctx.registry.disable(
        endpoint_id, reason=body.reason, expected_version=body.version, actor=who.name
    )


@router.post("/endpoints/{endpoint_id}/enable", response_model=Endpoint, responses=errors(404, 409))
async def enable_endpoint(endpoint_id: str, body: EnableIn, who: Operator, ctx: Ctx) -> Endpoint:
    return await ctx.registry.enable(endpoint_id, expected_version=body.version, actor=who.name)


@router.delete("/endpoints/{endpoint_id}", status_code=204, responses=errors(404, 409))
async def delete_endpoint(
    endpoint_id: str, who: Admin, ctx: Ctx, version: int | None = None
) -> Response:
    await ctx.registry.delete(endpoint_id, expected_version=version, actor=who.name)
    return Response(status_code=204)


@router.post(
    "/endpoints/{endpoint_id}/rotate-secret",
    response_model=WithSecret,
    responses=errors(404, 409),
)
async def rotate_secret(endpoint_id: str, body: RotateIn, who: Admin, ctx: Ctx) -> WithSecret:
    rotated = await ctx.registry.rotate_secret(
        endpoint_id,
        overlap_seconds=body.overlap_seconds,
        expected_version=body.version,
        actor=who.name,
    )
    return WithSecret(endpoint=rotated.endpoint, secret=_shown(rotated.secret))


@router.get("/audit", response_model=AuditList)
async def audit_log(
    who: Viewer,
    ctx: Ctx,
    target: Annotated[str | None, Query(max_length=300)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AuditList:
    return AuditList(items=await ctx.registry.audit(target=target or None, limit=limit))
