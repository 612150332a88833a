"""One machine (``/console/machines/{name}``): its risk and overview, and tabs listing its
discovered apps, user history and IP address history."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from enforcer.console import tables as t
from enforcer.console.pages.cached import catalog
from enforcer.console.pages.links import app_link, user_link
from enforcer.console.pages.listing import find_report
from enforcer.console.web import PREFIX, SignedIn, days_param, missing, render
from enforcer.discovery import reports
from enforcer.discovery.reports import day_range

router = APIRouter(prefix=PREFIX, include_in_schema=False)

MACHINE_TABS = {
    "overview": "Overview",
    "apps": "Discovered apps",
    "users": "User history",
    "ips": "IP address history",
}
TAB_COLUMNS = {
    "apps": (
        t.Column("name", "App", link=app_link()),
        t.Column("transactions", "Transactions", "number"),
        t.Column("upload", "Upload", "bytes"),
        t.Column("download", "Download", "bytes"),
        t.Column("firstSeen", "First seen", "time"),
        t.Column("lastSeen", "Last seen", "time"),
    ),
    "users": (
        t.Column("user", "User", link=user_link()),
        t.Column("firstSeen", "First seen", "time"),
        t.Column("lastSeen", "Last seen", "time"),
    ),
    "ips": (
        t.Column("ip", "IP address"),
        t.Column("firstSeen", "First seen", "time"),
        t.Column("lastSeen", "Last seen", "time"),
    ),
}
TAB_ROWS = {"apps": "apps", "users": "users", "ips": "ipAddresses"}
TAB_SORT = {"apps": "-upload", "users": "-lastSeen", "ips": "-lastSeen"}


@router.get("/machines/{name:path}")
def machine_page(request: Request, name: str, session: SignedIn) -> Response:
    days = days_param(request)
    first, last = day_range(days)
    tab = request.query_params.get("tab", "overview")
    tab = tab if tab in MACHINE_TABS else "overview"
    known = catalog(request)
    report = find_report(request, lambda c: reports.machine_report(c, known, name, first, last))
    if report is None:
        return missing(request, session, f"machine {name!r}")
    table = None
    if tab != "overview":
        rows = report[TAB_ROWS[tab]]
        csv_name = f"machine-{name}-{tab}"
        table = t.table(
            request, TAB_COLUMNS[tab], rows, default_sort=TAB_SORT[tab], csv_name=csv_name
        )
        if t.wants_csv(request):
            return t.csv_response(
                t.order(request, TAB_COLUMNS[tab], rows, TAB_SORT[tab]), TAB_COLUMNS[tab], csv_name
            )
    return render(
        request,
        "machine.html",
        session,
        section="machines",
        days=days,
        m=report,
        tab=tab,
        tabs=MACHINE_TABS,
        table=table,
    )
