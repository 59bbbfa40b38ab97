"""The operator console's pages: server-rendered HTML (Jinja2, autoescaped), a few lines
of our own JavaScript for progress and "select all", no inline script anywhere."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from webhooks.core.bulk import BulkAction, BulkFilter, BulkRequest
from webhooks.core.filters import DeadLetterFilter, DeliveryFilter
from webhooks.core.models import (
    DeadLetterReason,
    DeadLetterState,
    DeadLetterView,
    DeliveryState,
    DiscardRequest,
    RedeliverRequest,
)
from webhooks.core.roles import Role
from webhooks.ops import bulk, circuits, dead_letters, deliveries
from webhooks.server.auth import Principal
from webhooks.server.context import ConsoleContext, context
from webhooks.server.deps import CSRF_FIELD, page_role
from webhooks.server.forms import choice, moment, optional
from webhooks.server.templating import templates

router = APIRouter(include_in_schema=False)
Viewer = Annotated[Principal, Depends(page_role(Role.VIEWER))]
Operator = Annotated[Principal, Depends(page_role(Role.OPERATOR))]
Ctx = Annotated[ConsoleContext, Depends(context)]
PAGE_SIZE = 50


def render(request: Request, name: str, who: Principal | None, **values: Any) -> HTMLResponse:
    ctx: ConsoleContext = request.app.state.console
    return templates.TemplateResponse(
        request,
        name,
        {
            "who": who,
            "csrf": who.csrf if who else "",
            "csrf_field": CSRF_FIELD,
            "can_act": bool(who and who.may(Role.OPERATOR)),
            "sees_payloads": bool(who and who.may(ctx.console.payload_role)),
            **values,
        },
    )


def error_page(request: Request, status: int, message: str) -> Response:
    ctx: ConsoleContext = request.app.state.console
    who = ctx.auth.authenticate(request)
    response = render(request, "error.html", who, status=status, message=message)
    response.status_code = status
    return response


def back(path: str, **params: str) -> RedirectResponse:
    query = urlencode({k: v for k, v in params.items() if v})
    return RedirectResponse(path + (f"?{query}" if query else ""), status_code=303)


def _states(view: DeadLetterView, state: str, **extra: str) -> dict[str, Mapping[str, object]]:
    return {
        "before": {"state": view.state.value},
        "after": {"state": state, **extra},
    }


def _safe_next(target: str | None) -> str:
    """Only paths on this site: `//evil.example` and `https://...` are not."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/"


@router.get("/login", name="login_form")
async def login_form(request: Request, ctx: Ctx, next: str = "/") -> Response:
    session = ctx.auth.session(request) or ctx.auth.sessions.new()
    response = render(
        request, "login.html", None, login_csrf=session.csrf, next=_safe_next(next), failed=False
    )
    ctx.auth.sessions.set_cookie(request, response, session)
    return response


@router.post("/login")
async def login(
    request: Request,
    ctx: Ctx,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    session = ctx.auth.session(request)
    if session is None or not csrf_token or csrf_token != session.csrf:
        return error_page(request, 403, "the sign-in form expired: reload it and try again")
    role = ctx.auth.check_password(username, password)
    if role is None:
        response = render(
            request, "login.html", None, login_csrf=session.csrf, next=_safe_next(next), failed=True
        )
        response.status_code = 401
        return response
    redirect = RedirectResponse(_safe_next(next), status_code=303)
    # A new session (and CSRF token) at sign-in: a planted cookie is worthless.
    ctx.auth.sessions.set_cookie(request, redirect, ctx.auth.sessions.new(username, role.value))
    return redirect


@router.post("/logout")
async def logout(request: Request, who: Viewer) -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie("webhooks_session", path="/")
    return response


@router.get("/", name="overview")
async def overview(request: Request, who: Viewer, ctx: Ctx) -> Response:
    since = datetime.now(UTC) - timedelta(hours=24)
    client = ctx.temporal
    by_state = await deliveries.count_by_state(client, since)
    open_letters = await dead_letters.count_open_by_reason(client, DeadLetterFilter())
    not_closed = await circuits.circuits_not_closed(client)
    return render(
        request,
        "overview.html",
        who,
        by_state=by_state,
        open_letters=open_letters,
        circuits=not_closed,
        since=since,
    )


@router.get("/deliveries", name="deliveries")
async def delivery_list(
    request: Request,
    who: Viewer,
    ctx: Ctx,
    endpoint: str = "",
    event_type: str = "",
    state: str = "",
    since: str = "",
    until: str = "",
    cursor: Annotated[str | None, Query()] = None,
) -> Response:
    where = DeliveryFilter(
        endpoint_id=optional(endpoint),
        event_type=optional(event_type),
        state=choice(DeliveryState, state),
        since=moment(since, "since"),
        until=moment(until, "until"),
    )
    page = await deliveries.delivery_page(ctx.temporal, where, page_size=PAGE_SIZE, cursor=cursor)
    params = {"endpoint": endpoint, "event_type": event_type, "state": state}
    params |= {"since": since, "until": until}
    return render(
        request,
        "deliveries.html",
        who,
        page=page,
        params=params,
        states=list(DeliveryState),
        next_query=urlencode(params | {"cursor": page.next_cursor or ""}),
    )


@router.get("/deliveries/{delivery_id}", name="delivery")
async def delivery(request: Request, delivery_id: str, who: Viewer, ctx: Ctx) -> Response:
    detail = await deliveries.get_delivery(ctx.temporal, delivery_id)
    return render(request, "delivery.html", who, d=detail, delivery_id=delivery_id)


@router.post("/deliveries/{delivery_id}/retry")
async def retry(delivery_id: str, who: Operator, ctx: Ctx) -> Response:
    await deliveries.retry_now(ctx.temporal, delivery_id)
    await ctx.audit(who.name, "retry_now", delivery_id)
    return back(f"/deliveries/{delivery_id}", done="retry_now signalled")


def _dead_letter_filter(
    endpoint: str, event_type: str, reason: str, since: str, until: str
) -> BulkFilter:
    return BulkFilter(
        endpoint_id=optional(endpoint),
        event_type=optional(event_type),
        reason=choice(DeadLetterReason, reason),
        since=moment(since, "since"),
        until=moment(until, "until"),
    )


@router.get("/dead-letters", name="dead_letters")
async def dead_letter_list(
    request: Request,
    who: Viewer,
    ctx: Ctx,
    endpoint: str = "",
    event_type: str = "",
    reason: str = "",
    since: str = "",
    until: str = "",
    cursor: Annotated[str | None, Query()] = None,
) -> Response:
    chosen = _dead_letter_filter(endpoint, event_type, reason, since, until)
    where = DeadLetterFilter(
        endpoint_id=chosen.endpoint_id,
        event_type=chosen.event_type,
        reason=chosen.reason,
        since=chosen.since,
        until=chosen.until,
    )
    page = await dead_letters.dead_letter_page(
        ctx.temporal, where, page_size=PAGE_SIZE, cursor=cursor
    )
    matching = (await ctx.temporal.count_workflows(where.query())).count
    params = {"endpoint": endpoint, "event_type": event_type, "reason": reason}
    params |= {"since": since, "until": until}
    return render(
        request,
        "dead_letters.html",
        who,
        page=page,
        params=params,
        matching=matching,
        reasons=list(DeadLetterReason),
        next_query=urlencode(params | {"cursor": page.next_cursor or ""}),
    )


@router.get("/dead-letters/{dead_letter_id}", name="dead_letter")
async def dead_letter(request: Request, dead_letter_id: str, who: Viewer, ctx: Ctx) -> Response:
    view = await dead_letters.get_dead_letter(ctx.temporal, dead_letter_id)
    return render(request, "dead_letter.html", who, v=view, open=view.state is DeadLetterState.OPEN)


@router.post("/dead-letters/{dead_letter_id}/redeliver")
async def redeliver(dead_letter_id: str, who: Operator, ctx: Ctx) -> Response:
    view = await dead_letters.act_on(
        ctx.temporal, dead_letter_id, RedeliverRequest(requested_by=who.name)
    )
    await ctx.audit(who.name, "redeliver", dead_letter_id, **_states(view, "redelivered"))
    return back(f"/dead-letters/{dead_letter_id}", done="redelivery requested")


@router.post("/dead-letters/{dead_letter_id}/discard")
async def discard(
    dead_letter_id: str, who: Operator, ctx: Ctx, note: Annotated[str, Form()] = ""
) -> Response:
    view = await dead_letters.act_on(
        ctx.temporal, dead_letter_id, DiscardRequest(requested_by=who.name, reason=note[:2000])
    )
    await ctx.audit(
        who.name, "discard", dead_letter_id, **_states(view, "discarded", note=note[:2000])
    )
    return back(f"/dead-letters/{dead_letter_id}", done="discarded")


@router.post("/dead-letters/bulk")
async def bulk_action(
    who: Operator,
    ctx: Ctx,
    action: Annotated[BulkAction, Form()],
    scope: Annotated[str, Form()] = "selected",
    ids: Annotated[list[str] | None, Form()] = None,
    note: Annotated[str, Form()] = "",
    rate: Annotated[float, Form(ge=0.1, le=200)] = 10,
    endpoint: Annotated[str, Form()] = "",
    event_type: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    since: Annotated[str, Form()] = "",
    until: Annotated[str, Form()] = "",
) -> Response:
    request = BulkRequest(
        action=action,
        filter=_dead_letter_filter(endpoint, event_type, reason, since, until)
        if scope == "all"
        else None,
        ids=None if scope == "all" else (ids or []),
        per_second=rate,
        requested_by=who.name,
        note=note[:2000],
    )
    job_id = await bulk.start_bulk(ctx.temporal, ctx.settings, request)
    await ctx.audit(who.name, f"bulk_{action.value}", job_id, after=bulk.describe(request))
    return back(f"/jobs/{job_id}")


@router.get("/jobs", name="jobs")
async def jobs(request: Request, who: Viewer, ctx: Ctx) -> Response:
    return render(request, "jobs.html", who, jobs=await bulk.list_jobs(ctx.temporal))


@router.get("/jobs/{job_id}", name="job")
async def job(request: Request, job_id: str, who: Viewer, ctx: Ctx) -> Response:
    progress = await bulk.job_progress(ctx.temporal, job_id)
    return render(request, "job.html", who, job_id=job_id, p=progress)


@router.get("/jobs/{job_id}/progress", name="job_progress")
async def job_fragment(request: Request, job_id: str, who: Viewer, ctx: Ctx) -> Response:
    """The progress box alone, polled by console.js while the job runs."""
    progress = await bulk.job_progress(ctx.temporal, job_id)
    return render(request, "_progress.html", who, job_id=job_id, p=progress)


@router.post("/jobs/{job_id}/cancel")
async def cancel(job_id: str, who: Operator, ctx: Ctx) -> Response:
    await bulk.cancel_job(ctx.temporal, job_id)
    await ctx.audit(who.name, "bulk_cancel", job_id)
    return back(f"/jobs/{job_id}")
