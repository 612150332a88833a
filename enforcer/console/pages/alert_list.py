"""Alerts (``/console/alerts``): open, acknowledged or all alerts, by severity, newest first."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from enforcer.console import tables as t
from enforcer.console.pages.cached import connect
from enforcer.console.pages.links import app_link, machine_link
from enforcer.console.web import PREFIX, SignedIn, render
from enforcer.store.alerts import list_alerts

router = APIRouter(prefix=PREFIX, include_in_schema=False)

ALERT_COLUMNS = (
    t.Column("time", "First hit", "time", sortable=False),
    t.Column("last_seen", "Last hit", "time", sortable=False),
    t.Column("hits", "Hits", "number", sortable=False),
    t.Column("severity", "Severity", "severity", sortable=False),
    t.Column("domain", "Domain", sortable=False),
    t.Column("app_id", "App", sortable=False, link=app_link("app_id")),
    t.Column("action", "Action", sortable=False),
    t.Column("device_id", "Device", sortable=False, link=machine_link("device_id")),
    t.Column("user", "User", sortable=False),
    t.Column("status", "Status", sortable=False),
)


@router.get("/alerts")
def alerts(request: Request, session: SignedIn) -> Response:
    status = request.query_params.get("status", "open")
    status = status if status in ("open", "acknowledged", "all") else "open"
    severity = request.query_params.get("severity", "") or None
    page = t.page_number(request)
    with connect(request) as conn:
        if t.wants_csv(request):
            rows = list_alerts(
                conn, status=None if status == "all" else status, severity=severity, limit=1_000_000
            )
            return t.csv_response(rows, ALERT_COLUMNS, "alerts")
        rows = list_alerts(
            conn,
            status=None if status == "all" else status,
            severity=severity,
            limit=t.PAGE_SIZE + 1,
            offset=(page - 1) * t.PAGE_SIZE,
        )
    more = len(rows) > t.PAGE_SIZE
    table = t.Table(
        ALERT_COLUMNS,
        rows[: t.PAGE_SIZE],
        len(rows),
        page,
        page + 1 if more else page,
        "",
        False,
        "alerts",
    )
    return render(
        request,
        "alerts.html",
        session,
        section="alerts",
        table=table,
        alert_status=status,
        severity=severity or "",
        params=request.query_params,
    )
