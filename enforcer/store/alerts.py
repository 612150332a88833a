"""Discovery alerts: raised by the continuous report, listed, acknowledged and closed by people.

An alert is raised for a device's hit on an indicator with generateAlert (`alerting_severities`
reads which indicators those are), or by an alert policy of the policy repo
(`raise_policy_alerts`). Either way one alert stays open per key and counts its hits.
`pending_forward` and `mark_forwarded` are the outbox of the webhook and syslog forwarding.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, case, delete, func, insert, select, update

from enforcer.models import ALL_DEVICES
from enforcer.store.audit import record_change
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


def raise_policy_alerts(
    conn: Connection, hits: Sequence[Mapping[str, Any]], *, report: str = ""
) -> int:
    """Store what alert policies raised (inside the caller's transaction) from the data of the
    named `report` (an upload's snapshot, a syslog collector, the devices' events): one open
    alert per (policy, machine, user, app); a hit on an open alert's key adds its count to
    `hits`, moves `last_seen` and names the report that raised it last. An acknowledged or
    closed alert is not reopened: the next hit opens a new one. Returns how many alerts were
    opened."""
    opened = 0
    for hit in hits:
        key = (
            ALERT.c.policy == hit["policy"],
            ALERT.c.machine == hit["machine"],
            ALERT.c.user == hit["user"],
            ALERT.c.app_id == hit["app_id"],
            ALERT.c.status == "open",
        )
        open_id = conn.execute(
            select(ALERT.c.id).where(*key).order_by(ALERT.c.id).limit(1)
        ).scalar()
        if open_id is None:
            conn.execute(
                insert(ALERT).values(
                    time=hit["time"],
                    last_seen=hit["time"],
                    device_id="",
                    machine=hit["machine"][:256],
                    user=hit["user"][:256],
                    domain=hit["domain"][:253],
                    app_id=hit["app_id"],
                    action=hit["when"],
                    severity=hit["severity"],
                    policy=hit["policy"],
                    details=hit["details"][:1024],
                    hits=hit["count"],
                    status="open",
                    report=report[:256],
                )
            )
            opened += 1
            continue
        conn.execute(
            update(ALERT)
            .where(ALERT.c.id == open_id)
            .values(
                hits=ALERT.c.hits + hit["count"],
                details=hit["details"][:1024],
                report=report[:256],
                last_seen=case(
                    (ALERT.c.last_seen.is_(None), hit["time"]),
                    (ALERT.c.last_seen < hit["time"], hit["time"]),
                    else_=ALERT.c.last_seen,
                ),
            )
        )
    return opened


def alert_policy_names(conn: Connection) -> list[str]:
    """The alert policies that have raised alerts, by name."""
    query = select(ALERT.c.policy).where(ALERT.c.policy != "").distinct().order_by(ALERT.c.policy)
    return list(conn.scalars(query))


def pending_forward(conn: Connection, *, limit: int = 500) -> list[dict[str, Any]]:
    """Alerts not yet forwarded to the configured receivers, oldest first."""
    query = select(ALERT).where(ALERT.c.forwarded_at.is_(None)).order_by(ALERT.c.id).limit(limit)
    return [dict(r._mapping) for r in conn.execute(query)]


def mark_forwarded(engine: Engine, alert_ids: Sequence[int]) -> None:
    """Record that these alerts reached every configured receiver."""
    with engine.begin() as conn:
        for start in range(0, len(alert_ids), 500):
            conn.execute(
                update(ALERT)
                .where(ALERT.c.id.in_(list(alert_ids[start : start + 500])))
                .values(forwarded_at=dt.datetime.now(dt.UTC))
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
    policy: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Alerts, newest first, filtered (`policy`: an alert policy's name; ``""``: the
    indicators' alerts) and paged."""
    query = select(ALERT).order_by(ALERT.c.time.desc(), ALERT.c.id.desc())
    if since is not None:
        query = query.where(ALERT.c.time >= since)
    if status:
        query = query.where(ALERT.c.status == status)
    if severity:
        query = query.where(func.lower(ALERT.c.severity) == severity.lower())
    if policy is not None:
        query = query.where(ALERT.c.policy == policy)
    return [dict(r._mapping) for r in conn.execute(query.limit(limit).offset(offset))]


def acknowledge_alert(engine: Engine, alert_id: int, *, actor: str) -> bool:
    """Mark an alert acknowledged (seen, being handled); False when there is no such alert."""
    return _set_status(engine, alert_id, "acknowledged", actor=actor)


def close_alert(engine: Engine, alert_id: int, *, actor: str) -> bool:
    """Close an alert (handled); False when there is no such alert. The next hit on its key
    opens a new alert."""
    return _set_status(engine, alert_id, "closed", actor=actor)


def _set_status(engine: Engine, alert_id: int, status: str, *, actor: str) -> bool:
    # The status and its audit row (alert.acknowledge / alert.close) are one transaction.
    with engine.begin() as conn:
        row = conn.execute(
            select(ALERT.c.status, ALERT.c.domain, ALERT.c.app_id, ALERT.c.policy)
            .where(ALERT.c.id == alert_id)
        ).first()  # fmt: skip
        if row is None:
            return False
        conn.execute(
            update(ALERT)
            .where(ALERT.c.id == alert_id)
            .values(status=status, acknowledged_by=actor, acknowledged_at=dt.datetime.now(dt.UTC))
        )
        record_change(
            conn, actor=actor, action="alert.close" if status == "closed" else "alert.acknowledge",
            target=f"alert {alert_id}",
            details={"before": row.status, "domain": row.domain, "app_id": row.app_id,
                     "policy": row.policy},
        )  # fmt: skip
    return True
