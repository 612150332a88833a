"""Discovery alerts: raised by the continuous report, listed and acknowledged by people.

An alert is raised for a device's hit on an indicator with generateAlert; `alerting_severities`
reads which indicators those are.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, case, delete, func, insert, select, update

from enforcer.models import ALL_DEVICES
from enforcer.store.tables.discovery import ALERT
from enforcer.store.tables.indicators import IND


def alerting_severities(conn: Connection, *, values: Iterable[str]) -> dict[str, dict[str, str]]:
    """For each of `values` with an indicator that has generateAlert: scope -> its severity
    (``""`` for all devices). A hit alerts only when the device is in one of the scopes."""
    wanted = sorted(set(values))
    if not wanted:
        return {}
    query = select(IND.c.value, IND.c.scope, IND.c.severity).where(
        IND.c.value.in_(wanted), IND.c.generate_alert.is_(True)
    )
    out: dict[str, dict[str, str]] = {}
    for value, scope, severity in conn.execute(query):
        out.setdefault(value, {})[scope] = severity
    return out


def alert_severity(scopes: Mapping[str, str], groups: Iterable[str]) -> str | None:
    """The severity an alerting indicator has for a device in `groups` (a group's own
    indicator before the all-devices one, as on the device), or None: not in its scope."""
    for group in sorted(groups):
        if group in scopes:
            return scopes[group]
    return scopes.get(ALL_DEVICES)


def insert_alerts(conn: Connection, alerts: Sequence[Mapping[str, Any]]) -> None:
    """Store raised alerts (inside the caller's transaction), one open alert per (indicator,
    device, user): a hit whose key has an open alert adds to its `hits` and `last_seen`
    instead of a new row, so a flood of hits is one line an admin reads, with its count.
    An acknowledged alert is not reopened: the next hit opens a new one."""
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for alert in alerts:
        groups.setdefault((alert["indicator"], alert["device_id"], alert["user"]), []).append(alert)
    for (indicator, device_id, user), hits in groups.items():
        first = min(hits, key=lambda a: a["time"])
        last = max(a["time"] for a in hits)
        open_id = conn.execute(
            select(ALERT.c.id)
            .where(
                ALERT.c.indicator == indicator,
                ALERT.c.device_id == device_id,
                ALERT.c.user == user,
                ALERT.c.status == "open",
            )
            .order_by(ALERT.c.id)
            .limit(1)
        ).scalar()
        if open_id is None:
            conn.execute(insert(ALERT).values(**first, hits=len(hits), last_seen=last))
            continue
        conn.execute(
            update(ALERT)
            .where(ALERT.c.id == open_id)
            .values(
                hits=ALERT.c.hits + len(hits),
                last_seen=case(
                    (ALERT.c.last_seen.is_(None), last),
                    (ALERT.c.last_seen < last, last),
                    else_=ALERT.c.last_seen,
                ),
            )
        )


def prune_alerts(engine: Engine, before: dt.datetime) -> int:
    """Delete the alerts last seen before `before` (alert retention); returns how many."""
    last = func.coalesce(ALERT.c.last_seen, ALERT.c.time)
    with engine.begin() as conn:
        return int(conn.execute(delete(ALERT).where(last < before)).rowcount)


def list_alerts(
    conn: Connection,
    *,
    since: dt.datetime | None = None,
    status: str | None = None,
    severity: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Alerts, newest first, filtered and paged."""
    query = select(ALERT).order_by(ALERT.c.time.desc(), ALERT.c.id.desc())
    if since is not None:
        query = query.where(ALERT.c.time >= since)
    if status:
        query = query.where(ALERT.c.status == status)
    if severity:
        query = query.where(func.lower(ALERT.c.severity) == severity.lower())
    return [dict(r._mapping) for r in conn.execute(query.limit(limit).offset(offset))]


def acknowledge_alert(engine: Engine, alert_id: int, *, actor: str) -> bool:
    """Mark an alert acknowledged; False when there is no such alert."""
    with engine.begin() as conn:
        done = conn.execute(
            update(ALERT)
            .where(ALERT.c.id == alert_id)
            .values(
                status="acknowledged",
                acknowledged_by=actor,
                acknowledged_at=dt.datetime.now(dt.UTC),
            )
        ).rowcount
    return bool(done)
