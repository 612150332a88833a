"""Page-sized reads of the discovery rollups, batched for the console's tables.

`discovery.reports` answers one machine or user at a time (the CLI's needs); a table page needs
the same figures for 50 rows at once, so these read them in one query per page (primary-key
lookups: day IN (...) AND device IN (...)) instead of one range scan per row. Candidates to move
into `discovery.reports` once other callers need them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection

from enforcer.catalog import Catalog
from enforcer.discovery.device_risk import DeviceAppDay, DeviceRisk, device_risk
from enforcer.store import queries
from enforcer.store.encoding import ordinals_in
from enforcer.store.entities import entity_names


def iso(epoch: float | None) -> str | None:
    """Seconds since the epoch as an ISO time (UTC), the reports' time format."""
    if not epoch:
        return None
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="seconds")


def device_totals(conn: Connection, first: int, last: int) -> list[dict[str, Any]]:
    """Every device's sums over the range, with its name (the machines table before risk)."""
    names = entity_names(conn, "device")
    return [
        {
            "device": names.get(r["device"], str(r["device"])),
            "ordinal": r["device"],
            "transactions": int(r["transactions"]),
            "traffic": int(r["bytes_up"] + r["bytes_down"]),
            "upload": int(r["bytes_up"]),
            "download": int(r["bytes_down"]),
            "blocked": int(r["blocked"]),
            "lastSeen": iso(r["last_seen"]),
        }
        for r in queries.device_usage(conn, first, last)
    ]


def last_users(conn: Connection, devices: Sequence[int], first: int, last: int) -> dict[int, str]:
    """The last user seen on each device in the range (highest ordinal on its latest day)."""
    if not devices:
        return {}
    latest: dict[int, tuple[int, int]] = {}
    for device, day, users in queries.device_day_users(
        conn, devices=devices, first_day=first, last_day=last
    ):
        ords = ordinals_in(users)
        if ords and day >= latest.get(device, (-1, 0))[0]:
            latest[device] = (day, max(ords))
    names = entity_names(conn, "user", {o for _, o in latest.values()})
    return {d: names.get(o, "") for d, (_, o) in latest.items()}


def device_risks(
    conn: Connection,
    catalog: Catalog,
    devices: Sequence[int],
    last_day: int,
    unsanctioned: set[str],
) -> dict[int, DeviceRisk]:
    """Risk of each device: its last day against its own 30-day baseline (as the reports do)."""
    if not devices:
        return {}
    history: dict[int, list[DeviceAppDay]] = {d: [] for d in devices}
    # Plain tuples: a page reads ~30,000 rows, and Row attribute access would double the time.
    for device, *usage in queries.device_app_history(
        conn, devices=devices, first_day=last_day - 30, last_day=last_day
    ):
        history[device].append(DeviceAppDay(*usage))
    seen = {h.app_id for rows in history.values() for h in rows}
    scores = {a: catalog.apps[a].score for a in seen if a in catalog.apps}
    return {
        d: device_risk(
            rows,
            recent_from=last_day,
            app_scores=scores,
            unsanctioned=unsanctioned,
            blocked_recent=sum(h.blocked for h in rows if h.day >= last_day),
        )
        for d, rows in history.items()
    }


def user_totals(conn: Connection, first: int, last: int) -> list[dict[str, Any]]:
    """Every user's sums over the range (SQL aggregation; device and app counts come per page)."""
    names = entity_names(conn, "user")
    return [
        {
            "user": names.get(user, str(user)),
            "ordinal": user,
            "transactions": int(tx),
            "traffic": int(up + down),
            "upload": int(up),
            "download": int(down),
            "lastSeen": iso(last_seen),
        }
        for user, tx, up, down, last_seen in queries.user_sums(conn, first_day=first, last_day=last)
    ]


def user_counts(
    conn: Connection, users: Sequence[int], first: int, last: int
) -> dict[int, tuple[int, int]]:
    """(distinct devices, distinct apps) of each user over the range."""
    if not users:
        return {}
    devices: dict[int, int] = {}
    apps: dict[int, set[str]] = {}
    for user, bits, names in queries.user_day_members(
        conn, users=users, first_day=first, last_day=last
    ):
        devices[user] = devices.get(user, 0) | bits
        apps.setdefault(user, set()).update(names.split())
    return {x: (devices.get(x, 0).bit_count(), len(apps.get(x, ()))) for x in users}


def distinct_users(conn: Connection, first: int, last: int) -> int:
    """Users seen in the range (OR of the apps' daily user bitsets)."""
    return queries.distinct_users(conn, first_day=first, last_day=last)
