"""Machines (``/console/machines``): every machine seen in the range, by hostname (searchable),
with its IP addresses, the risk level, last user and, for machines with an enrolled device, its OS, groups, last
applied revision, time to enforce and whether it is stale, computed for the rows shown."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import Connection

from enforcer.config import get_settings
from enforcer.console import tables as t
from enforcer.console.pages.cached import cached, catalog
from enforcer.console.pages.links import machine_link, user_link
from enforcer.console.pages.listing import (
    LAST_SEEN_COLUMN,
    TRAFFIC_COLUMNS,
    Listing,
)
from enforcer.console.web import PREFIX, SignedIn, state
from enforcer.discovery import reports
from enforcer.discovery.identity import UserNames, load_user_names

router = APIRouter(prefix=PREFIX, include_in_schema=False)

MACHINE_COLUMNS = (
    t.Column("device", "Device", link=machine_link()),
    t.Column("ips", "IP addresses", sortable=False),
    t.Column("riskLevel", "Risk level", "level", sortable=False),
    t.Column("lastUser", "Last user", link=user_link("lastUser"), sortable=False),
    t.Column("os", "OS", sortable=False),
    t.Column("groups", "Groups", sortable=False),
    t.Column("appliedRevision", "Revision", "number", sortable=False),
    t.Column("timeToEnforce", "Time to enforce", "duration", sortable=False),
    t.Column("enforcement", "Enforcement", sortable=False),
    *TRAFFIC_COLUMNS,
    LAST_SEEN_COLUMN,
)


@router.get("/machines")
def machines(request: Request, session: SignedIn) -> Response:
    return MACHINES.page(request, session)


def _risk_and_last_user(
    request: Request, rows: list[dict[str, Any]], first: int, last: int
) -> None:
    """Each row's risk level, last user and enrolment columns; cached like the range-wide reads."""
    ordinals = tuple(r["ordinal"] for r in rows)
    names = {r["ordinal"]: r["device"] for r in rows}
    known = catalog(request)
    stale_after = state(request).stale_after

    def read(conn: Connection, first: int, last: int) -> dict[int, dict[str, Any]]:
        unsanctioned = reports.unsanctioned_apps(conn)
        risks = reports.device_risks(conn, known, ordinals, last, unsanctioned, first_day=first)
        users = reports.last_users(conn, ordinals, first, last)
        ips = reports.machine_ips(conn, ordinals, first, last)
        enrolled = reports.machine_devices(conn, list(names.values()), stale_after=stale_after)
        return {
            o: {
                "riskLevel": risks[o].level.value,
                "lastUser": users.get(o, ""),
                "ips": ", ".join(ips.get(o, [])),
                **_enrolment(reports.enrolment_columns(enrolled[names[o]])),
            }
            for o in ordinals
        }

    found = cached(request, ("machines", ordinals), first, last, read)
    for r in rows:
        r.update(found[r["ordinal"]])


def _enrolment(columns: dict[str, Any]) -> dict[str, Any]:
    """The enrolment columns as the table shows them (groups joined, stale as a word)."""
    stale = columns.pop("stale")
    columns["groups"] = ", ".join(columns["groups"])
    columns["enforcement"] = "" if stale is None else "stale" if stale else "current"
    return columns


MACHINES = Listing(
    section="machines",
    heading="Machines",
    search_label="Hostname, IP address or user",
    key="device",
    report="devices",
    totals=reports.device_totals,
    columns=MACHINE_COLUMNS,
    annotate=_risk_and_last_user,
    search=lambda conn, text, first, last: reports.matching_machines(
        conn, text, first, last, names=_user_names()
    ),
)


def _user_names() -> UserNames:
    return load_user_names(get_settings())
