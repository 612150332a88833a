"""One machine (``/console/machines/{name}``, by hostname): its risk and overview with its enrolled
devices (id, OS, agent, groups, applied revision, time to enforce, stale), and tabs listing its
discovered apps, top processes, user history, IP address history and its raw events timeline
(`machine_timeline`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from enforcer.console import tables as t
from enforcer.console.pages.cached import catalog
from enforcer.console.pages.links import app_link, user_link
from enforcer.console.pages.listing import find_report
from enforcer.console.pages.machine_timeline import timeline
from enforcer.console.web import PREFIX, SignedIn, days_param, missing, render, state
from enforcer.discovery import reports
from enforcer.discovery.reports import day_range

router = APIRouter(prefix=PREFIX, include_in_schema=False)

MACHINE_TABS = {
    "overview": "Overview",
    "apps": "Discovered apps",
    "processes": "Top processes",
    "users": "User history",
    "ips": "IP address history",
    "timeline": "Timeline",
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
    "processes": (
        t.Column("process", "Process"),
        t.Column("path", "Path"),
        t.Column("requests", "Requests", "number"),
        t.Column("upload", "Upload", "bytes"),
        t.Column("download", "Download", "bytes"),
        t.Column("users", "Users", "number"),
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
TAB_ROWS = {"apps": "apps", "processes": "topProcesses", "users": "users", "ips": "ipAddresses"}
TAB_SORT = {"apps": "-upload", "processes": "-requests", "users": "-lastSeen", "ips": "-lastSeen"}


@router.get("/machines/{name:path}")
def machine_page(request: Request, name: str, session: SignedIn) -> Response:
    days = days_param(request)
    first, last = day_range(days)
    tab = request.query_params.get("tab", "overview")
    tab = tab if tab in MACHINE_TABS else "overview"
    known = catalog(request)
    after = state(request).stale_after
    report = find_report(
        request,
        lambda c: reports.machine_report(c, known, name, first, last, stale_after=after),
    )
    if report is None:
        return missing(request, session, f"machine {name!r}")
    table = None
    tabs = MACHINE_TABS
    if tab == "timeline":
        table, title, csv = timeline(request, name, days)
        if csv is not None:
            return csv  # type: ignore[no-any-return]
        tabs = {**MACHINE_TABS, "timeline": title}
    elif tab != "overview":
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
        tabs=tabs,
        table=table,
    )
