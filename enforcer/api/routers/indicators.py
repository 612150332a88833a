"""The admin Indicators API, in the shape of Defender for Endpoint's (indicatorValue, action, ...).

Policy indicators are owned by reconciliation: they can be read here but not deleted (the next
reconcile would recreate them). Manual indicators are created and deleted here.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from enforcer.api.deps import MAX_INT64, Admin, Ctx
from enforcer.api.problems import fail
from enforcer.models import MANUAL, POLICY, Action
from enforcer.store.by_name import StoredIndicator
from enforcer.store.lookup import (
    UnknownIndicatorError,
    count_indicators,
    get_indicator,
    list_indicators,
)
from enforcer.store.manual import DuplicateIndicatorError, add_manual, delete_manual
from enforcer.web.manual import IndicatorCreate
from enforcer.wire.indicators import DefenderIndicator, to_defender
from enforcer.wire.limits import APP_ID_MAX, DOMAIN_MAX

router = APIRouter(prefix="/api/v1/indicators", tags=["indicators"])

ALL_DEVICES_FILTER = "@all"
"""The `scope` filter value selecting indicators for all devices (no group name starts with @)."""


class IndicatorOut(DefenderIndicator):
    """An indicator as the API shows it: Defender's fields plus id, source and times."""

    id: int
    source: Literal["manual", "policy"]
    createdBy: str
    creationTimeDateTimeUtc: str
    lastUpdateTime: str


class IndicatorList(BaseModel):
    """One page of indicators and the total that match the filters."""

    value: list[IndicatorOut]
    count: int


def indicator_json(stored: StoredIndicator) -> dict[str, Any]:
    """`stored` as an `IndicatorOut` JSON object."""
    return {
        "id": stored.id,
        **to_defender(stored.indicator),
        "source": stored.source,
        "createdBy": stored.created_by,
        "creationTimeDateTimeUtc": _utc(stored.created_at),
        "lastUpdateTime": _utc(stored.updated_at),
    }


def _utc(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


@router.get("", response_model=IndicatorList, summary="List indicators (paged, filtered)")
def list_(
    _admin: Admin,
    ctx: Ctx,
    top: Annotated[int, Query(ge=1, le=10_000)] = 100,
    skip: Annotated[int, Query(ge=0, le=MAX_INT64)] = 0,
    source: Annotated[Literal["", "manual", "policy"], Query()] = "",
    action: Annotated[Action | Literal[""], Query()] = "",
    app: Annotated[str, Query(max_length=APP_ID_MAX)] = "",
    contains: Annotated[str, Query(max_length=DOMAIN_MAX)] = "",
    scope: Annotated[
        str, Query(max_length=64, description="A device group, or @all for all-devices ones.")
    ] = "",
) -> IndicatorList:
    """Indicators in value order. Empty filters match everything."""
    filters: dict[str, Any] = {
        "source": source or None,
        "action": Action(action) if action else None,
        "app_id": app or None,
        "contains": contains or None,
        "scope": ("" if scope == ALL_DEVICES_FILTER else scope) if scope else None,
    }
    with ctx.engine.connect() as conn:
        total = count_indicators(conn, **filters)
        page = list_indicators(conn, limit=top, offset=skip, **filters)
    return IndicatorList(value=[indicator_json(s) for s in page], count=total)


@router.get("/{indicator_id}", response_model=IndicatorOut, summary="One indicator")
def get(
    indicator_id: Annotated[int, Path(ge=0, le=MAX_INT64)], _admin: Admin, ctx: Ctx
) -> dict[str, Any]:
    """An indicator by id; 404 when there is none."""
    try:
        with ctx.engine.connect() as conn:
            return indicator_json(get_indicator(conn, indicator_id))
    except UnknownIndicatorError as exc:
        raise fail(404, str(exc)) from None


@router.post("", status_code=201, response_model=IndicatorOut, summary="Create a manual indicator")
async def create(body: IndicatorCreate, admin: Admin, ctx: Ctx) -> dict[str, Any]:
    """Create a manual indicator (never touched by reconciliation); 409 if one exists already."""

    def work() -> dict[str, Any]:
        new_id, _revision = add_manual(ctx.engine, body.to_indicator(), actor=admin)
        with ctx.engine.connect() as conn:
            return indicator_json(get_indicator(conn, new_id))

    try:
        return await run_in_threadpool(work)
    except DuplicateIndicatorError as exc:
        raise fail(409, str(exc)) from None


@router.delete("/{indicator_id}", status_code=204, summary="Delete a manual indicator")
def delete(
    indicator_id: Annotated[int, Path(ge=0, le=MAX_INT64)], admin: Admin, ctx: Ctx
) -> Response:
    """Delete a manual indicator; a policy one is refused with 409 (change the policy instead)."""
    try:
        with ctx.engine.connect() as conn:
            stored = get_indicator(conn, indicator_id)
        if stored.source == POLICY:
            raise fail(
                409,
                f"indicator {indicator_id} ({stored.indicator.value}) is managed by policy; "
                "change the policy files instead (the next reconcile would recreate it)",
            )
        assert stored.source == MANUAL
        delete_manual(ctx.engine, indicator_id, actor=admin)
    except UnknownIndicatorError as exc:
        raise fail(404, str(exc)) from None
    return Response(status_code=204)
