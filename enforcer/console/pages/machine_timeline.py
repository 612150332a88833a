"""The Timeline tab of a machine page: the newest raw network events of the machine (by
hostname or device id) in the page's day range, as `enforcer events list --device` shows them.

The tab holds at most `TIMELINE_MAX` events (sorted and paged in the page like every table);
its title says when the machine has more, and where to read them all (the CLI or the API).
Each event's user is named as the reports name it (``alice`` for ``CONTOSO\\alice``,
`enforcer.discovery.identity`), linked to the user's page, with the form the device sent beside
it when that differs.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import Request

from enforcer.config import get_settings
from enforcer.console import tables as t
from enforcer.console.pages.cached import connect
from enforcer.console.pages.links import user_link
from enforcer.discovery.identity import UserNames, load_user_names
from enforcer.store.event_search import EventSearch, search_events

TIMELINE_MAX = 500
COLUMNS = (
    t.Column("time", "Time", "time"),
    t.Column("user", "User", link=user_link()),
    t.Column("seen_as", "Sent as"),
    t.Column("process", "Process"),
    t.Column("domain", "Domain"),
    t.Column("destination", "Destination"),
    t.Column("action", "Action"),
    t.Column("upload", "Upload", "bytes"),
    t.Column("download", "Download", "bytes"),
    t.Column("indicator", "Indicator"),
)


def timeline(request: Request, name: str, days: int) -> tuple[t.Table | None, str, Any]:
    """(the table, its title, a CSV response when one was asked for) of machine `name`."""
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    with connect(request) as conn:
        page = search_events(conn, EventSearch(device=name, since=since), limit=TIMELINE_MAX)
    names = load_user_names(get_settings())
    rows = [_row(found.event, names) for found in page.events]
    title = "Timeline"
    if page.more:
        title = (
            f"Timeline: the newest {TIMELINE_MAX} events (more match: "
            f"enforcer events list --device {name}, or GET /api/v1/events)"
        )
    csv_name = f"machine-{name}-timeline"
    if t.wants_csv(request):
        ordered = t.order(request, COLUMNS, rows, "-time")
        return None, title, t.csv_response(ordered, COLUMNS, csv_name)
    return t.table(request, COLUMNS, rows, default_sort="-time", csv_name=csv_name), title, None


def _row(event: Any, names: UserNames) -> dict[str, Any]:
    dest = event.dest_ip if ":" not in event.dest_ip else f"[{event.dest_ip}]"
    user = names(event.user) if event.user else ""
    return {
        "time": event.time.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "user": user,
        "seen_as": event.user if event.user != user else "",
        "process": event.process_name,
        "domain": event.domain,
        "destination": f"{dest}:{event.dest_port}" if event.dest_ip else "",
        "action": event.action,
        "upload": event.bytes_up,
        "download": event.bytes_down,
        "indicator": event.indicator,
    }
