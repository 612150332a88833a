"""Alerts (``/console/alerts``): open, acknowledged, closed or all alerts, by severity and alert
policy, newest first, each with the report (data source) whose data raised it; each open alert
can be acknowledged or closed."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from enforcer.console import tables as t
from enforcer.console.pages.cached import connect
from enforcer.console.pages.links import app_link, machine_link
from enforcer.console.web import PREFIX, SignedIn, render
from enforcer.store.alerts import alert_policy_names, list_alerts

router = APIRouter(prefix=PREFIX, include_in_schema=False)

ALERT_COLUMNS = (
    t.Column("time", "First hit", "time", sortable=False),
    t.Column("last_seen", "Last hit", "time", sortable=False),
    t.Column("hits", "Hits", "number", sortable=False),
    t.Column("severity", "Severity", "severity", sortable=False),
    t.Column("policy", "Alert policy", sortable=False),
    t.Column("report", "Report", sortable=False),
    t.Column("domain", "Domain", sortable=False),
    t.Column("app_id", "App", sortable=False, link=app_link("app_id")),
    t.Column("action", "Kind", sortable=False),
    t.Column("machine", "Machine", sortable=False, link=machine_link("machine")),
    t.Column("user", "User", sortable=False),
    t.Column("details", "Details", sortable=False),
    t.Column("status", "Status", sortable=False),
)
STATUSES = ("open", "acknowledged", "closed", "all")


@router.get("/alerts")
def alerts(request: Request, session: SignedIn) -> Response:
    status = request.query_params.get("status", "open")
    status = status if status in STATUSES else "open"
    severity = request.query_params.get("severity", "") or None
    policy = request.query_params.get("policy") or None
    page = t.page_number(request)
    with connect(request) as conn:
        if t.wants_csv(request):
            rows = _machines(
                list_alerts(
                    conn, status=None if status == "all" else status, severity=severity,
                    policy=policy, limit=1_000_000,
                )
            )  # fmt: skip
            return t.csv_response(rows, ALERT_COLUMNS, "alerts")
        rows = list_alerts(
            conn,
            status=None if status == "all" else status,
            severity=severity,
            policy=policy,
            limit=t.PAGE_SIZE + 1,
            offset=(page - 1) * t.PAGE_SIZE,
        )
        policies = alert_policy_names(conn)
    rows = _machines(rows)
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
        statuses=STATUSES,
        severity=severity or "",
        policy=policy or "",
        policies=policies,
        params=request.query_params,
    )


def _machines(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An indicator's alert names its device; an alert policy's, its machine: one column."""
    for row in rows:
        row["machine"] = row["machine"] or row["device_id"]
    return rows
