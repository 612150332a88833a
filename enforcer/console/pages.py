"""The console's reading pages: dashboard, discovered apps, machines, users, domains, alerts,
indicators. Every page is a GET that renders server-side and answers ``?format=csv`` with its table.

Queries stay on the discovery rollup tables (day rows with bitsets), so a 30-day range over
10,000 devices answers quickly; per-device risk is computed for the page shown only.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import Connection, Engine, select

from enforcer.catalog import CATEGORIES, Catalog
from enforcer.catalog.risk import explain_risk
from enforcer.console import governance as gov
from enforcer.console import queries as q
from enforcer.console import tables as t
from enforcer.console.chart import Series, bar_chart
from enforcer.console.web import PREFIX, SignedIn, api, days_param, render, segment, state
from enforcer.discovery import reports
from enforcer.discovery.reports import NotFoundError, day_range
from enforcer.models import Action
from enforcer.store import discovery as db
from enforcer.store.indicators import count_indicators, list_indicators, read_app_tags

router = APIRouter(prefix=PREFIX, include_in_schema=False)
T = TypeVar("T")
log = structlog.get_logger("enforcer.console")


def _catalog(request: Request) -> Catalog:
    return state(request).catalog(api(request).settings.policy_dir)


def _connect(request: Request) -> Connection:
    return api(request).engine.connect()


def _cached(request: Request, name: Hashable, first: int, last: int, read: Callable[..., T]) -> T:
    """A range-wide read through the report cache (see `cache`): `read(conn, first, last)`."""
    engine = api(request).engine
    return state(request).reports.get((name, first, last), lambda: _read(engine, read, first, last))


def _apps_rows(request: Request, first: int, last: int) -> list[dict[str, Any]]:
    catalog = _catalog(request)
    key = ("apps", state(request).catalog_digest)  # custom apps change names and categories
    rows = _cached(
        request, key, first, last, lambda c, f, la: reports.apps_report(c, catalog, f, la)
    )
    return [dict(r) for r in rows]  # pages may annotate their copy


def app_link(row: dict[str, Any]) -> str:
    return f"{PREFIX}/apps/{segment(row['app'])}"


def machine_link(row: dict[str, Any]) -> str:
    return f"{PREFIX}/machines/{segment(row['device'])}"


def user_link(row: dict[str, Any]) -> str:
    # User names from logs look like CORP\alice or alice@corp.example: always quote them.
    return f"{PREFIX}/users/{segment(row['user'])}"


def warm(app: Any) -> None:
    """Compute the default range's sums in a background thread (at start-up), so the first
    dashboard after a restart does not wait for 30 days of rollups."""
    first, last = day_range(30)
    engine, policy_dir = app.state.ctx.engine, app.state.ctx.settings.policy_dir
    console = app.state.console

    def run() -> None:
        catalog = console.catalog(policy_dir)
        jobs: list[tuple[Hashable, Callable[[Connection, int, int], Any]]] = [
            (
                ("apps", console.catalog_digest),
                lambda c, f, la: reports.apps_report(c, catalog, f, la),
            ),
            ("devices", q.device_totals),
            ("users-count", q.distinct_users),
            ("users", q.user_totals),
        ]
        for name, read in jobs:
            try:
                console.reports.get(
                    (name, first, last), lambda r=read: _read(engine, r, first, last)
                )
            except Exception as exc:  # a warm-up is an optimisation: never fail the server
                log.warning("console_warm_up_failed", report=str(name), error=repr(exc))
                return

    threading.Thread(target=run, name="console-warm-up", daemon=True).start()


def _read(engine: Engine, read: Callable[[Connection, int, int], T], first: int, last: int) -> T:
    with engine.connect() as conn:
        return read(conn, first, last)


# --- dashboard -----------------------------------------------------------------------------


@router.get("/")
def dashboard(request: Request, session: SignedIn) -> Response:
    days = days_param(request)
    first, last = day_range(days)
    apps = _apps_rows(request, first, last)
    devices = _cached(request, "devices", first, last, q.device_totals)
    users = _cached(request, "users-count", first, last, q.distinct_users)
    with _connect(request) as conn:
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
    """Blocked attempts per day (hourly rollup) and warned ones (alerts of Warn indicators)."""
    blocked = [0] * (last - first + 1)
    for row in db.app_hours(conn, first * 24, last * 24 + 23):
        blocked[row.hour // 24 - first] += row.blocked
    warned = [0] * (last - first + 1)
    since = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=first)
    for alert in db.list_alerts(conn, since=since, limit=100_000):
        if alert["action"] in ("warned", "bypassed"):
            when = alert["time"]
            day = (when.replace(tzinfo=when.tzinfo or dt.UTC) - since).days
            if 0 <= day < len(warned):
                warned[day] += 1
    labels = [
        (dt.date(1970, 1, 1) + dt.timedelta(days=d)).strftime("%m-%d")
        for d in range(first, last + 1)
    ]
    return blocked, warned, labels


# --- discovered apps -----------------------------------------------------------------------

APP_COLUMNS = (
    t.Column("name", "App", link=app_link),
    t.Column("category", "Category"),
    t.Column("risk", "Risk", "risk"),
    t.Column("tag", "Tag", "tag"),
    t.Column("transactions", "Transactions", "number"),
    t.Column("traffic", "Traffic", "bytes"),
    t.Column("upload", "Upload", "bytes"),
    t.Column("download", "Download", "bytes"),
    t.Column("users", "Users", "number"),
    t.Column("devices", "Devices", "number"),
    t.Column("lastSeen", "Last seen", "time"),
)


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def filter_apps(rows: list[dict[str, Any]], params: dict[str, str]) -> list[dict[str, Any]]:
    """Rows matching the page's filters: category, tag, risk range, text in name or id."""
    text = params.get("q", "").strip().lower()
    category, tag = params.get("category", ""), params.get("tag", "")
    low, high = _float(params.get("min_risk")), _float(params.get("max_risk"))
    out = []
    for r in rows:
        if text and text not in r["name"].lower() and text not in r["app"]:
            continue
        if category and r["category"] != category:
            continue
        if tag and (r["tag"] or "untagged") != tag:
            continue
        if low is not None and (r["risk"] is None or r["risk"] < low):
            continue
        if high is not None and (r["risk"] is None or r["risk"] > high):
            continue
        out.append(r)
    return out


@router.get("/apps")
def apps(request: Request, session: SignedIn) -> Response:
    days = days_param(request)
    first, last = day_range(days)
    rows = filter_apps(_apps_rows(request, first, last), dict(request.query_params))
    table = t.table(request, APP_COLUMNS, rows, default_sort="-traffic", csv_name="discovered-apps")
    if t.wants_csv(request):
        return t.csv_response(
            t.order(request, APP_COLUMNS, rows, "-traffic"), APP_COLUMNS, table.csv_name
        )
    return render(
        request,
        "apps.html",
        session,
        section="apps",
        days=days,
        table=table,
        categories=CATEGORIES,
        params=request.query_params,
    )


@router.get("/apps/{app_id}")
def app_page(request: Request, app_id: str, session: SignedIn) -> Response:
    days = days_param(request)
    first, last = day_range(days)
    catalog = _catalog(request)
    app = catalog.apps.get(app_id)
    with _connect(request) as conn:
        usage = db.app_usage(conn, first, last, app_ids=[app_id]).get(app_id)
        devices, users = _app_members(conn, app_id, first, last)
        tags = [
            (scope or "all devices", tag, origin)
            for a, scope, tag, origin in read_app_tags(conn)
            if a == app_id
        ]
    if app is None and usage is None:
        return render(request, "missing.html", session, status=404, what=f"app {app_id!r}")
    return render(
        request,
        "app.html",
        session,
        section="apps",
        days=days,
        app_id=app_id,
        app=app,
        usage=usage,
        reasons=explain_risk(app) if app else [],
        attributes=app.risk.model_dump() if app else {},
        devices=devices,
        users=users,
        tags=tags,
        console_tag=gov.console_tag(api(request).settings.policy_dir, app_id),
    )


def _app_members(
    conn: Connection, app_id: str, first: int, last: int, limit: int = 200
) -> tuple[list[str], list[str]]:
    """Names of the devices and users that reached an app (OR of the day bitsets)."""
    query = select(db.APP_DAY.c.devices, db.APP_DAY.c.users).where(
        db.APP_DAY.c.app_id == app_id,
        db.APP_DAY.c.domain == "",
        db.APP_DAY.c.day >= first,
        db.APP_DAY.c.day <= last,
    )
    devices = users = 0
    for d, u in conn.execute(query):
        devices |= db.from_bytes(d)
        users |= db.from_bytes(u)
    names = []
    for kind, bits in (("device", devices), ("user", users)):
        found = db.entity_names(conn, kind, db.ordinals_in(bits)[:limit])
        names.append(sorted(found.values()))
    return names[0], names[1]


# --- machines ------------------------------------------------------------------------------

MACHINE_COLUMNS = (
    t.Column("device", "Device", link=machine_link),
    t.Column("riskLevel", "Risk level", "level", sortable=False),
    t.Column(
        "lastUser",
        "Last user",
        link=lambda r: user_link({"user": r["lastUser"]}) if r["lastUser"] else "",
        sortable=False,
    ),
    t.Column("transactions", "Transactions", "number"),
    t.Column("traffic", "Traffic", "bytes"),
    t.Column("upload", "Upload", "bytes"),
    t.Column("download", "Download", "bytes"),
    t.Column("lastSeen", "Last seen", "time"),
)


@router.get("/machines")
def machines(request: Request, session: SignedIn) -> Response:
    days = days_param(request)
    first, last = day_range(days)
    text = request.query_params.get("q", "").strip().lower()
    rows = _cached(request, "devices", first, last, q.device_totals)
    if text:
        rows = [r for r in rows if text in r["device"].lower()]
    table = t.table(request, MACHINE_COLUMNS, rows, default_sort="-traffic", csv_name="machines")
    shown = (
        t.order(request, MACHINE_COLUMNS, rows, "-traffic") if t.wants_csv(request) else table.rows
    )
    shown = [dict(r) for r in shown]
    for start in range(0, len(shown), 500):
        chunk = shown[start : start + 500]
        found = _machine_extras(request, tuple(r["ordinal"] for r in chunk), first, last)
        for r in chunk:
            r["riskLevel"], r["lastUser"] = found[r["ordinal"]]
    for r in shown:
        del r["ordinal"]
    if t.wants_csv(request):
        return t.csv_response(shown, MACHINE_COLUMNS, "machines")
    return render(
        request,
        "machines.html",
        session,
        section="machines",
        days=days,
        table=dataclasses.replace(table, rows=shown),
        params=request.query_params,
    )


def _machine_extras(
    request: Request, ordinals: tuple[int, ...], first: int, last: int
) -> dict[int, tuple[str, str]]:
    """(risk level, last user) per device of a page; cached like the range-wide reads."""
    catalog = _catalog(request)

    def read(conn: Connection, first: int, last: int) -> dict[int, tuple[str, str]]:
        unsanctioned = {
            a for a, scope, tag, _ in read_app_tags(conn) if not scope and tag == "unsanctioned"
        }
        risks = q.device_risks(conn, catalog, ordinals, last, unsanctioned)
        users = q.last_users(conn, ordinals, first, last)
        return {o: (risks[o].level.value, users.get(o, "")) for o in ordinals}

    return _cached(request, ("machines", ordinals), first, last, read)


MACHINE_TABS = {
    "overview": "Overview",
    "apps": "Discovered apps",
    "users": "User history",
    "ips": "IP address history",
}
TAB_COLUMNS = {
    "apps": (
        t.Column("name", "App", link=app_link),
        t.Column("transactions", "Transactions", "number"),
        t.Column("upload", "Upload", "bytes"),
        t.Column("download", "Download", "bytes"),
        t.Column("firstSeen", "First seen", "time"),
        t.Column("lastSeen", "Last seen", "time"),
    ),
    "users": (
        t.Column("user", "User", link=user_link),
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
    try:
        with _connect(request) as conn:
            report = reports.machine_report(conn, _catalog(request), name, first, last)
    except NotFoundError:
        return render(request, "missing.html", session, status=404, what=f"machine {name!r}")
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


# --- users ---------------------------------------------------------------------------------

USER_COLUMNS = (
    t.Column("user", "User", link=user_link),
    t.Column("devices", "Devices", "number", sortable=False),
    t.Column("apps", "Apps", "number", sortable=False),
    t.Column("transactions", "Transactions", "number"),
    t.Column("traffic", "Traffic", "bytes"),
    t.Column("upload", "Upload", "bytes"),
    t.Column("download", "Download", "bytes"),
    t.Column("lastSeen", "Last seen", "time"),
)


@router.get("/users")
def users(request: Request, session: SignedIn) -> Response:
    days = days_param(request)
    first, last = day_range(days)
    text = request.query_params.get("q", "").strip().lower()
    rows = _cached(request, "users", first, last, q.user_totals)
    if text:
        rows = [r for r in rows if text in r["user"].lower()]
    table = t.table(request, USER_COLUMNS, rows, default_sort="-traffic", csv_name="users")
    shown = t.order(request, USER_COLUMNS, rows, "-traffic") if t.wants_csv(request) else table.rows
    shown = [dict(r) for r in shown]
    with _connect(request) as conn:
        for start in range(0, len(shown), 500):
            chunk = shown[start : start + 500]
            counts = q.user_counts(conn, [r["ordinal"] for r in chunk], first, last)
            for r in chunk:
                r["devices"], r["apps"] = counts[r["ordinal"]]
    for r in shown:
        del r["ordinal"]
    if t.wants_csv(request):
        return t.csv_response(shown, USER_COLUMNS, "users")
    return render(
        request,
        "users.html",
        session,
        section="users",
        days=days,
        table=dataclasses.replace(table, rows=shown),
        params=request.query_params,
    )


@router.get("/users/{name:path}")
def user_page(request: Request, name: str, session: SignedIn) -> Response:
    days = days_param(request)
    first, last = day_range(days)
    catalog = _catalog(request)
    try:
        with _connect(request) as conn:
            report = reports.user_report(conn, name, first, last)
    except NotFoundError:
        return render(request, "missing.html", session, status=404, what=f"user {name!r}")
    apps = [(a, catalog.apps[a].name if a in catalog.apps else a) for a in report["apps"]]
    return render(request, "user.html", session, section="users", days=days, u=report, apps=apps)


# --- unrecognised domains ------------------------------------------------------------------

DOMAIN_COLUMNS = (
    t.Column("domain", "Domain"),
    t.Column("transactions", "Transactions", "number"),
    t.Column("traffic", "Traffic", "bytes"),
    t.Column("upload", "Upload", "bytes"),
    t.Column("download", "Download", "bytes"),
    t.Column("users", "Users", "number"),
    t.Column("devices", "Devices", "number"),
    t.Column("lastSeen", "Last seen", "time"),
)


@router.get("/domains")
def domains(request: Request, session: SignedIn) -> Response:
    days = days_param(request)
    first, last = day_range(days)
    text = request.query_params.get("q", "").strip().lower()
    rows = _cached(request, "domains", first, last, reports.domains_report)
    if text:
        rows = [r for r in rows if text in r["domain"]]
    table = t.table(
        request, DOMAIN_COLUMNS, rows, default_sort="-traffic", csv_name="unrecognised-domains"
    )
    if t.wants_csv(request):
        return t.csv_response(
            t.order(request, DOMAIN_COLUMNS, rows, "-traffic"), DOMAIN_COLUMNS, table.csv_name
        )
    return render(
        request,
        "domains.html",
        session,
        section="domains",
        days=days,
        table=table,
        categories=CATEGORIES,
        params=request.query_params,
    )


# --- alerts --------------------------------------------------------------------------------

ALERT_COLUMNS = (
    t.Column("time", "Time", "time", sortable=False),
    t.Column("severity", "Severity", "severity", sortable=False),
    t.Column("domain", "Domain", sortable=False),
    t.Column(
        "app_id",
        "App",
        sortable=False,
        link=lambda r: app_link({"app": r["app_id"]}) if r["app_id"] else "",
    ),
    t.Column("action", "Action", sortable=False),
    t.Column(
        "device_id",
        "Device",
        sortable=False,
        link=lambda r: machine_link({"device": r["device_id"]}),
    ),
    t.Column("user", "User", sortable=False),
    t.Column("status", "Status", sortable=False),
)


@router.get("/alerts")
def alerts(request: Request, session: SignedIn) -> Response:
    status = request.query_params.get("status", "open")
    status = status if status in ("open", "acknowledged", "all") else "open"
    severity = request.query_params.get("severity", "") or None
    page = t.page_number(request)
    with _connect(request) as conn:
        if t.wants_csv(request):
            rows = db.list_alerts(
                conn, status=None if status == "all" else status, severity=severity, limit=1_000_000
            )
            return t.csv_response(rows, ALERT_COLUMNS, "alerts")
        rows = db.list_alerts(
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


# --- indicators ----------------------------------------------------------------------------

INDICATOR_COLUMNS = (
    t.Column("indicatorValue", "Domain", sortable=False),
    t.Column("source", "Source", sortable=False),
    t.Column(
        "application",
        "App",
        sortable=False,
        link=lambda r: app_link({"app": r["application"]}) if r["application"] else "",
    ),
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
    with _connect(request) as conn:
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


def _indicator_row(stored: Any) -> dict[str, Any]:
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
