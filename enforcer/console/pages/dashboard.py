"""The dashboard (``/console/``): the range's totals, top apps by traffic and by risk, apps per
category, and a chart of blocked and warned attempts per day."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import Connection

from enforcer.console.chart import Series, bar_chart
from enforcer.console.pages.cached import apps_rows, cached, connect
from enforcer.console.web import PREFIX, SignedIn, days_param, render
from enforcer.discovery import reports
from enforcer.discovery.reports import day_range
from enforcer.store.events import warned_per_day
from enforcer.store.queries import app_hours

router = APIRouter(prefix=PREFIX, include_in_schema=False)


@router.get("/")
def dashboard(request: Request, session: SignedIn) -> Response:
    days = days_param(request)
    first, last = day_range(days)
    apps = apps_rows(request, first, last)
    devices = cached(request, "devices", first, last, reports.device_totals)
    users = cached(request, "users-count", first, last, reports.distinct_users)
    with connect(request) as conn:
        blocked, warned, labels = _attempts(conn, first, last)
    by_category: dict[str, int] = {}
    for row in apps:
        by_category[row["category"] or "other"] = by_category.get(row["category"] or "other", 0) + 1
    chart = bar_chart(
        labels,
        [Series("Blocked", blocked, "bar-blocked"), Series("Warned", warned, "bar-warned")],
        f"Blocked and warned attempts per day, last {days} days",
    )
    return render(
        request,
        "dashboard.html",
        session,
        section="dashboard",
        days=days,
        app_count=len(apps),
        user_count=users,
        device_count=len(devices),
        traffic=sum(r["traffic"] for r in apps),
        upload=sum(r["upload"] for r in apps),
        top_traffic=apps[:8],
        top_risk=sorted(
            (r for r in apps if r["risk"] is not None), key=lambda r: (-r["risk"], -r["traffic"])
        )[:8],
        categories=sorted(by_category.items(), key=lambda kv: (-kv[1], kv[0])),
        category_max=max(by_category.values(), default=1),
        chart=chart,
        blocked_total=sum(blocked),
        warned_total=sum(warned),
    )


def _attempts(conn: Connection, first: int, last: int) -> tuple[list[int], list[int], list[str]]:
    """Blocked attempts per day (hourly rollup) and warned ones (the devices' warned and
    bypassed events, alerting or not; raw events, so within their retention)."""
    blocked = [0] * (last - first + 1)
    for row in app_hours(conn, first * 24, last * 24 + 23):
        blocked[row.hour // 24 - first] += row.blocked
    since = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=first)
    per_day = warned_per_day(conn, since)
    warned = [
        per_day.get((dt.date(1970, 1, 1) + dt.timedelta(days=d)).isoformat(), 0)
        for d in range(first, last + 1)
    ]
    labels = [
        (dt.date(1970, 1, 1) + dt.timedelta(days=d)).strftime("%m-%d")
        for d in range(first, last + 1)
    ]
    return blocked, warned, labels
