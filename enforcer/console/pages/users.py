"""Users (``/console/users``): every user seen in the range, with the number of devices and apps
counted for the rows shown."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from enforcer.config import get_settings
from enforcer.console import tables as t
from enforcer.console.pages.cached import connect
from enforcer.console.pages.links import user_link
from enforcer.console.pages.listing import (
    LAST_SEEN_COLUMN,
    TRAFFIC_COLUMNS,
    Listing,
)
from enforcer.console.web import PREFIX, SignedIn
from enforcer.discovery import reports
from enforcer.discovery.identity import load_user_names

router = APIRouter(prefix=PREFIX, include_in_schema=False)

USER_COLUMNS = (
    t.Column("user", "User", link=user_link()),
    t.Column("devices", "Devices", "number", sortable=False),
    t.Column("apps", "Apps", "number", sortable=False),
    *TRAFFIC_COLUMNS,
    LAST_SEEN_COLUMN,
)


@router.get("/users")
def users(request: Request, session: SignedIn) -> Response:
    return USERS.page(request, session)


def _device_and_app_counts(
    request: Request, rows: list[dict[str, Any]], first: int, last: int
) -> None:
    with connect(request) as conn:
        counts = reports.user_counts(conn, [r["ordinal"] for r in rows], first, last)
    for r in rows:
        r["devices"], r["apps"] = counts[r["ordinal"]]


USERS = Listing(
    section="users",
    heading="Users",
    search_label="User name (any form: CONTOSO\\alice finds alice)",
    key="user",
    report="users",
    totals=reports.user_totals,
    columns=USER_COLUMNS,
    annotate=_device_and_app_counts,
    search=lambda conn, text, _first, _last: reports.matching_users(
        conn, text, names=load_user_names(get_settings())
    ),
)
