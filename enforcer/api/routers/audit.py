"""The audit log over HTTP: ``GET /api/v1/audit``, every recorded change, newest first, as JSON
or CSV (text that a spreadsheet would run as a formula is neutralised). Any account may read
it, analysts included (`enforcer.store.audit` says what is recorded)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from starlette.concurrency import run_in_threadpool

from enforcer.api.deps import MAX_INT64, Admin, Ctx
from enforcer.api.problems import fail
from enforcer.discovery.reports import to_csv
from enforcer.store.audit import ACTIONS, check_action_filter, list_audit, parse_since
from enforcer.store.tables.accounts import ACTOR_MAX

router = APIRouter(prefix="/api/v1", tags=["audit"])
CSV_HEADER = "id,time,actor,action,target,details\r\n"


@router.get("/audit", summary="The audit log: who changed what, and when (JSON or CSV)")
async def audit(
    ctx: Ctx,
    _reader: Admin,
    since: Annotated[
        str | None,
        Query(max_length=40, description="30m, 24h, 7d back, or an ISO 8601 date or time (UTC)."),
    ] = None,
    actor: Annotated[str | None, Query(max_length=ACTOR_MAX, description="An actor.")] = None,
    action: Annotated[
        str | None,
        Query(max_length=64, description=f"An action or its first part: {', '.join(ACTIONS)}."),
    ] = None,
    format: Literal["json", "csv"] = "json",
    top: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
    skip: Annotated[int, Query(ge=0, le=MAX_INT64)] = 0,
) -> Any:
    """Recorded changes, newest first: policy applies (revision and counts), manual indicators
    added and removed, alerts acknowledged and closed, device groups assigned, devices approved,
    account changes, console edits. Page with `top` and `skip`."""
    try:
        start = parse_since(since) if since else None
    except ValueError as exc:
        raise fail(422, f"since: {exc}") from None
    try:
        action = check_action_filter(action) if action else None
    except ValueError as exc:
        raise fail(422, f"action: {exc}") from None

    def run() -> list[dict[str, Any]]:
        with ctx.engine.connect() as conn:
            entries = list_audit(
                conn, since=start, actor=actor, action=action, limit=top, offset=skip
            )
        return [e.as_row() if format == "csv" else e.as_json() for e in entries]

    rows = await run_in_threadpool(run)
    if format == "csv":
        return Response(to_csv(rows) if rows else CSV_HEADER, media_type="text/csv")
    return rows
