"""Discovered apps (``/console/apps``): every catalog app reached in the range, filtered by
category, tag, custom tag (``?custom_tag=``), risk range or text."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from enforcer.catalog import CATEGORIES
from enforcer.console import tables as t
from enforcer.console.pages.cached import apps_rows
from enforcer.console.pages.links import app_link
from enforcer.console.pages.listing import (
    LAST_SEEN_COLUMN,
    REACH_COLUMNS,
    TRAFFIC_COLUMNS,
    range_table,
)
from enforcer.console.web import PREFIX, SignedIn, days_param, state
from enforcer.discovery.reports import day_range
from enforcer.store.reviews import apps_with_custom_tag

router = APIRouter(prefix=PREFIX, include_in_schema=False)

APP_COLUMNS = (
    t.Column("name", "App", link=app_link()),
    t.Column("category", "Category"),
    t.Column("risk", "Risk", "risk"),
    t.Column("tag", "Tag", "tag"),
    *TRAFFIC_COLUMNS,
    *REACH_COLUMNS,
    t.Column("ips", "IPs", "number"),
    LAST_SEEN_COLUMN,
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
    rows = filter_apps(apps_rows(request, first, last), dict(request.query_params))
    custom_tag = request.query_params.get("custom_tag", "")
    if custom_tag:  # apps carrying a custom tag of the policy (as last applied)
        with state(request).engine.connect() as conn:
            tagged = apps_with_custom_tag(conn, custom_tag)
        rows = [r for r in rows if r["app"] in tagged]
    return range_table(
        request, session, section="apps", columns=APP_COLUMNS, rows=rows,
        csv_name="discovered-apps", days=days, first=first, last=last, categories=CATEGORIES,
    )  # fmt: skip
