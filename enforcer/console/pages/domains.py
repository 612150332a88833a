"""Unrecognised domains (``/console/domains``): traffic to names no catalog app claims, from which
an admin makes a custom app."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from enforcer.catalog import CATEGORIES
from enforcer.console import tables as t
from enforcer.console.pages.cached import cached
from enforcer.console.pages.listing import (
    LAST_SEEN_COLUMN,
    REACH_COLUMNS,
    TRAFFIC_COLUMNS,
    range_table,
)
from enforcer.console.web import PREFIX, SignedIn, days_param
from enforcer.discovery import reports
from enforcer.discovery.reports import day_range

router = APIRouter(prefix=PREFIX, include_in_schema=False)

DOMAIN_COLUMNS = (
    t.Column("domain", "Domain"),
    *TRAFFIC_COLUMNS,
    *REACH_COLUMNS,
    LAST_SEEN_COLUMN,
)


@router.get("/domains")
def domains(request: Request, session: SignedIn) -> Response:
    days = days_param(request)
    first, last = day_range(days)
    text = request.query_params.get("q", "").strip().lower()
    rows = cached(request, "domains", first, last, reports.domains_report)
    if text:
        rows = [r for r in rows if text in r["domain"]]
    return range_table(
        request, session, section="domains", columns=DOMAIN_COLUMNS, rows=rows,
        csv_name="unrecognised-domains", days=days, first=first, last=last, categories=CATEGORIES,
    )  # fmt: skip
