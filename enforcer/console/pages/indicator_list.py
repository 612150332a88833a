"""Indicators (``/console/indicators``): the store's indicators by source, action or text, with the
form that adds a manual one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from enforcer.console import tables as t
from enforcer.console.pages.cached import connect
from enforcer.console.pages.links import app_link
from enforcer.console.web import PREFIX, SignedIn, render
from enforcer.models import Action
from enforcer.store.by_name import StoredIndicator
from enforcer.store.lookup import count_indicators, list_indicators

router = APIRouter(prefix=PREFIX, include_in_schema=False)

INDICATOR_COLUMNS = (
    t.Column("indicatorValue", "Domain", sortable=False),
    t.Column("source", "Source", sortable=False),
    t.Column("application", "App", sortable=False, link=app_link("application")),
    t.Column("action", "Action", sortable=False),
    t.Column("severity", "Severity", "severity", sortable=False),
    t.Column("scope", "Scope", sortable=False),
    t.Column("expirationTime", "Expires", "time", sortable=False),
    t.Column("generateAlert", "Alert", sortable=False),
)


@router.get("/indicators")
def indicators(request: Request, session: SignedIn) -> Response:
    params = request.query_params
    source = params.get("source") or None
    text = params.get("q", "").strip() or None
    try:
        action = Action(params["action"]) if params.get("action") else None
    except ValueError:
        action = None
    page = t.page_number(request)
    with connect(request) as conn:
        if t.wants_csv(request):
            found = list_indicators(
                conn, source=source, action=action, contains=text, limit=10_000_000
            )
            return t.csv_response(
                [_indicator_row(s) for s in found], INDICATOR_COLUMNS, "indicators"
            )
        total = count_indicators(conn, source=source, action=action, contains=text)
        found = list_indicators(
            conn,
            source=source,
            action=action,
            contains=text,
            limit=t.PAGE_SIZE,
            offset=(page - 1) * t.PAGE_SIZE,
        )
    rows = [_indicator_row(s) for s in found]
    table = t.Table(
        INDICATOR_COLUMNS,
        rows,
        total,
        page,
        max(1, -(-total // t.PAGE_SIZE)),
        "",
        False,
        "indicators",
    )
    return render(
        request,
        "indicators.html",
        session,
        section="indicators",
        table=table,
        params=params,
        actions=[a.value for a in Action],
        error=params.get("error", ""),
    )


def _indicator_row(stored: StoredIndicator) -> dict[str, Any]:
    ind = stored.indicator
    return {
        "id": stored.id,
        "indicatorValue": ind.value,
        "source": stored.source,
        "application": ind.app_id,
        "action": ind.action.value,
        "severity": ind.severity.value,
        "scope": ind.scope or "all devices",
        "expirationTime": ind.expiration.isoformat() if ind.expiration else "",
        "generateAlert": "yes" if ind.generate_alert else "",
        "title": ind.title,
        "createdBy": stored.created_by,
    }
