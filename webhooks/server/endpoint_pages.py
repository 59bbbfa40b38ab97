"""The console's endpoint and audit pages: an account's endpoints with their circuit phase
and recent deliveries; edit URL or filter, disable/enable with a reason, rotate the secret
(shown once); the audit log, searchable."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from webhooks.core.filters import DeliveryFilter
from webhooks.core.roles import Role
from webhooks.ops import circuits, deliveries
from webhooks.registry.models import EndpointChanges, EndpointState
from webhooks.server.auth import Principal
from webhooks.server.context import ConsoleContext, context
from webhooks.server.deps import page_role
from webhooks.server.forms import choice, optional
from webhooks.server.pages import back, render

router = APIRouter(include_in_schema=False)
Viewer = Annotated[Principal, Depends(page_role(Role.VIEWER))]
Operator = Annotated[Principal, Depends(page_role(Role.OPERATOR))]
Admin = Annotated[Principal, Depends(page_role(Role.ADMIN))]
Ctx = Annotated[ConsoleContext, Depends(context)]
AUDIT_SCAN = 500
"""The audit page searches the newest this many rows."""


def event_types(text: str) -> list[str] | None:
    """`a, b` -> ["a", "b"]; empty -> None (every type)."""
    found = [t.strip() for t in text.replace("\n", ",").split(",") if t.strip()]
    return found or None


@router.get("/endpoints", name="endpoints")
async def endpoint_list(
    request: Request, who: Viewer, ctx: Ctx, account: str = "", state: str = ""
) -> Response:
    found = await ctx.registry.list_endpoints(
        account_id=optional(account), state=choice(EndpointState, state), limit=200
    )
    phases = {c.endpoint_id: c.phase for c in await circuits.circuits_not_closed(ctx.temporal)}
    return render(
        request,
        "endpoints.html",
        who,
        endpoints=found,
        phases=phases,
        params={"account": account, "state": state},
    )


@router.get("/endpoints/{endpoint_id}", name="endpoint")
async def endpoint(request: Request, endpoint_id: str, who: Viewer, ctx: Ctx) -> Response:
    found = await ctx.registry.get(endpoint_id)
    phases = {c.endpoint_id: c.phase for c in await circuits.circuits_not_closed(ctx.temporal)}
    recent = await deliveries.delivery_page(
        ctx.temporal, DeliveryFilter(endpoint_id=endpoint_id), page_size=10
    )
    return render(
        request,
        "endpoint.html",
        who,
        e=found,
        phase=phases.get(endpoint_id, "closed"),
        recent=recent.items,
        audit=await ctx.registry.audit(target=endpoint_id, limit=20),
        may_edit=who.may(Role.ADMIN),
    )


@router.post("/endpoints/{endpoint_id}/update")
async def update(
    endpoint_id: str,
    who: Admin,
    ctx: Ctx,
    version: Annotated[int, Form()],
    url: Annotated[str, Form()],
    types: Annotated[str, Form()] = "",
    description: Annotated[str, Form()] = "",
) -> Response:
    changes = EndpointChanges(
        url=url.strip(), event_types=event_types(types), description=description
    )
    await ctx.registry.update(endpoint_id, changes, expected_version=version, actor=who.name)
    return back(f"/endpoints/{endpoint_id}", done="saved")


@router.post("/endpoints/{endpoint_id}/disable")
async def disable(
    endpoint_id: str,
    who: Operator,
    ctx: Ctx,
    reason: Annotated[str, Form(min_length=1, max_length=500)],
    version: Annotated[int | None, Form()] = None,
) -> Response:
    await ctx.registry.disable(endpoint_id, reason=reason, expected_version=version, actor=who.name)
    return back(f"/endpoints/{endpoint_id}", done="disabled")


@router.post("/endpoints/{endpoint_id}/enable")
async def enable(
    endpoint_id: str,
    who: Operator,
    ctx: Ctx,
    reason: Annotated[str, Form(max_length=500)] = "",
    version: Annotated[int | None, Form()] = None,
) -> Response:
    await ctx.registry.enable(endpoint_id, expected_version=version, actor=who.name)
    if reason:
        await ctx.audit(who.name, "enable_reason", endpoint_id, after={"reason": reason})
    return back(f"/endpoints/{endpoint_id}", done="enabled")


@router.post("/endpoints/{endpoint_id}/rotate-secret")
async def rotate(
    request: Request,
    endpoint_id: str,
    who: Admin,
    ctx: Ctx,
    overlap_hours: Annotated[float, Form(ge=0, le=24 * 30)] = 24,
) -> Response:
    """The new secret is shown on this response only (never stored in the clear, never
    shown again)."""
    created = await ctx.registry.rotate_secret(
        endpoint_id, overlap_seconds=overlap_hours * 3600, actor=who.name
    )
    return render(
        request,
        "secret.html",
        who,
        e=created.endpoint,
        secret=created.secret.get_secret_value(),
    )


@router.get("/audit", name="audit")
async def audit(
    request: Request,
    who: Viewer,
    ctx: Ctx,
    target: str = "",
    actor: str = "",
    action: str = "",
) -> Response:
    rows = await ctx.registry.audit(target=optional(target), limit=AUDIT_SCAN)
    rows = [
        r
        for r in rows
        if (not actor or r.actor == actor.strip()) and (not action or r.action == action.strip())
    ]
    return render(
        request,
        "audit.html",
        who,
        rows=rows,
        params={"target": target, "actor": actor, "action": action},
    )
