"""Machines (``/console/machines``): every device seen in the range, with the risk level and last
user computed for the rows shown."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import Connection

from enforcer.console import tables as t
from enforcer.console.pages.cached import cached, catalog
from enforcer.console.pages.links import machine_link, user_link
from enforcer.console.pages.listing import (
    LAST_SEEN_COLUMN,
    TRAFFIC_COLUMNS,
    Listing,
)
from enforcer.console.web import PREFIX, SignedIn
from enforcer.discovery import reports

router = APIRouter(prefix=PREFIX, include_in_schema=False)

MACHINE_COLUMNS = (
    t.Column("device", "Device", link=machine_link()),
    t.Column("riskLevel", "Risk level", "level", sortable=False),
    t.Column("lastUser", "Last user", link=user_link("lastUser"), sortable=False),
    *TRAFFIC_COLUMNS,
    LAST_SEEN_COLUMN,
)


@router.get("/machines")
def machines(request: Request, session: SignedIn) -> Response:
    return MACHINES.page(request, session)


def _risk_and_last_user(
    request: Request, rows: list[dict[str, Any]], first: int, last: int
) -> None:
    """Each row's risk level and last user; cached like the range-wide reads."""
    ordinals = tuple(r["ordinal"] for r in rows)
    known = catalog(request)

    def read(conn: Connection, first: int, last: int) -> dict[int, tuple[str, str]]:
        unsanctioned = reports.unsanctioned_apps(conn)
        risks = reports.device_risks(conn, known, ordinals, last, unsanctioned)
        users = reports.last_users(conn, ordinals, first, last)
        return {o: (risks[o].level.value, users.get(o, "")) for o in ordinals}

    found = cached(request, ("machines", ordinals), first, last, read)
    for r in rows:
        r["riskLevel"], r["lastUser"] = found[r["ordinal"]]


MACHINES = Listing(
    section="machines",
    heading="Machines",
    search_label="Device name",
    key="device",
    report="devices",
    totals=reports.device_totals,
    columns=MACHINE_COLUMNS,
    annotate=_risk_and_last_user,
)
