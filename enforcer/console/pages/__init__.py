"""The console's reading pages, one module per page; every page is a GET rendered on the server,
and the table pages answer ``?format=csv`` with their table.

`router` holds them all. Beside the pages: `listing` (what the table pages share, and the lookup
of one machine's or user's report), `cached` (range-wide reads through the report cache, and their
warm-up at start), `links` (where a table cell links to).
"""

from __future__ import annotations

from fastapi import APIRouter

from enforcer.console.pages import (
    alert_list,
    app_detail,
    apps,
    audit_log,
    dashboard,
    domains,
    governance_review,
    indicator_list,
    machine_detail,
    machines,
    user_detail,
    users,
)

PAGES = (
    dashboard,
    apps,
    app_detail,
    machines,
    machine_detail,
    users,
    user_detail,
    domains,
    alert_list,
    indicator_list,
    governance_review,
    audit_log,
)
router = APIRouter()
for _page in PAGES:
    router.include_router(_page.router)
