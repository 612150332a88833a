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

from sqlalchemy import Connection, func, select

from enforcer.catalog import Catalog
from enforcer.discovery.device_risk import AppDay, DeviceRisk, device_risk
from enforcer.store import discovery as db


def iso(epoch: float | None) -> str | None:
    """Seconds since the epoch as an ISO time (UTC), the reports' time format."""
    if not epoch:
        return None
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="seconds")


def device_totals(conn: Connection, first: int, last: int) -> list[dict[str, Any]]:
    """Every device's sums over the range, with its name (the machines table before risk)."""
    names = db.entity_names(conn, "device")
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
        for r in db.device_usage(conn, first, last)
    ]


def last_users(conn: Connection, devices: Sequence[int], first: int, last: int) -> dict[int, str]:
    """The last user seen on each device in the range (highest ordinal on its latest day)."""
    if not devices:
        return {}
    query = select(db.DEV_DAY.c.device, db.DEV_DAY.c.day, db.DEV_DAY.c.users).where(
        db.DEV_DAY.c.day.in_(list(range(first, last + 1))), db.DEV_DAY.c.device.in_(list(devices))
    )
    latest: dict[int, tuple[int, int]] = {}
    for device, day, users in conn.execute(query):
        ords = db.ordinals_in(db.from_bytes(users))
        if ords and day >= latest.get(device, (-1, 0))[0]:
            latest[device] = (day, max(ords))
    names = db.entity_names(conn, "user", {o for _, o in latest.values()})
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
    c = db.DEV_APP.c
    query = select(
        c.device, c.day, c.app_id, c.transactions, c.bytes_up, c.bytes_down, c.blocked
    ).where(c.device.in_(list(devices)), c.day >= last_day - 30, c.day <= last_day)
    history: dict[int, list[AppDay]] = {d: [] for d in devices}
    # Plain tuples: a page reads ~30,000 rows, and Row attribute access would double the time.
    for device, *usage in conn.execute(query):
        history[device].append(AppDay(*usage))
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
    u = db.USER_DAY.c
    query = (
        select(
            u.user,
            func.sum(u.transactions),
            func.sum(u.bytes_up),
            func.sum(u.bytes_down),
            func.max(u.last_seen),
        )
        .where(u.day >= first, u.day <= last)
        .group_by(u.user)
    )
    names = db.entity_names(conn, "user")
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
        for user, tx, up, down, last_seen in conn.execute(query)
    ]


def user_counts(
    conn: Connection, users: Sequence[int], first: int, last: int
) -> dict[int, tuple[int, int]]:
    """(distinct devices, distinct apps) of each user over the range."""
    if not users:
        return {}
    u = db.USER_DAY.c
    query = select(u.user, u.devices, u.apps).where(
        u.day.in_(list(range(first, last + 1))), u.user.in_(list(users))
    )
    devices: dict[int, int] = {}
    apps: dict[int, set[str]] = {}
    for user, bits, names in conn.execute(query):
        devices[user] = devices.get(user, 0) | db.from_bytes(bits)
        apps.setdefault(user, set()).update(names.split())
    return {x: (devices.get(x, 0).bit_count(), len(apps.get(x, ()))) for x in users}


def distinct_users(conn: Connection, first: int, last: int) -> int:
    """Users seen in the range (OR of the apps' daily user bitsets)."""
    bits = 0
    query = select(db.APP_DAY.c.users).where(db.APP_DAY.c.day >= first, db.APP_DAY.c.day <= last)
    for (users,) in conn.execute(query):
        bits |= db.from_bytes(users)
    return bits.bit_count()
