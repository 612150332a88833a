"""The Cloud Discovery reports: discovered apps, unrecognised domains, machines, users, alerts.

Each report is a list of plain dicts (the same rows for the CLI table, CSV, JSON and the API);
`to_csv` and `to_json` write any of them. Time ranges are whole UTC days ending today.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection

from enforcer.catalog import Catalog
from enforcer.discovery.device_risk import DeviceAppDay, DeviceRisk, device_risk
from enforcer.store.encoding import day_of, from_bytes, ordinals_in
from enforcer.store.entities import entity_names, entity_ordinal
from enforcer.store.indicators import read_app_tags
from enforcer.store.queries import app_usage, device_app_days, device_days, device_usage, user_days


def day_range(since_days: int, now: dt.datetime | None = None) -> tuple[int, int]:
    """(first_day, last_day) of the last `since_days` days including today."""
    today = day_of(now or dt.datetime.now(dt.UTC))
    return today - max(1, since_days) + 1, today


def _iso(epoch: float) -> str | None:
    if epoch in (0.0, float("inf")):
        return None
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="seconds")


def _tags(conn: Connection) -> dict[str, str]:
    """All-devices sanction tag per app (as last applied)."""
    return {app: tag for app, scope, tag, _ in read_app_tags(conn) if scope == ""}


def apps_report(
    conn: Connection, catalog: Catalog, first_day: int, last_day: int
) -> list[dict[str, Any]]:
    tags = _tags(conn)
    rows = []
    for app_id, t in app_usage(conn, first_day, last_day).items():
        app = catalog.apps.get(app_id)
        rows.append(
            {
                "app": app_id,
                "name": app.name if app else app_id,
                "category": app.category if app else "",
                "risk": app.score if app else None,
                "tag": tags.get(app_id, ""),
                "transactions": t.transactions,
                "traffic": t.traffic,
                "upload": t.bytes_up,
                "download": t.bytes_down,
                "blocked": t.blocked,
                "users": t.users,
                "devices": t.devices,
                "ips": t.ips,
                "firstSeen": _iso(t.first_seen),
                "lastSeen": _iso(t.last_seen),
            }
        )
    return sorted(rows, key=lambda r: (-r["traffic"], r["app"]))


def domains_report(conn: Connection, first_day: int, last_day: int) -> list[dict[str, Any]]:
    """Unrecognised domains (no catalog app), ranked by traffic: candidates for custom apps."""
    rows = [
        {
            "domain": domain,
            "transactions": t.transactions,
            "traffic": t.traffic,
            "upload": t.bytes_up,
            "download": t.bytes_down,
            "users": t.users,
            "devices": t.devices,
            "firstSeen": _iso(t.first_seen),
            "lastSeen": _iso(t.last_seen),
        }
        for domain, t in app_usage(conn, first_day, last_day, unrecognised=True).items()
    ]
    return sorted(rows, key=lambda r: (-r["traffic"], r["domain"]))


def _risk_for(
    conn: Connection, catalog: Catalog, device: int, last_day: int, tags: dict[str, str]
) -> DeviceRisk:
    rows = device_app_days(conn, last_day - 30, last_day, device=device)
    history = [
        DeviceAppDay(r.day, r.app_id, r.transactions, r.bytes_up, r.bytes_down, r.blocked)
        for r in rows
    ]
    blocked = sum(h.blocked for h in history if h.day >= last_day)
    scores = {h.app_id: catalog.apps[h.app_id].score for h in history if h.app_id in catalog.apps}
    unsanctioned = {a for a, tag in tags.items() if tag == "unsanctioned"}
    return device_risk(
        history,
        recent_from=last_day,
        app_scores=scores,
        unsanctioned=unsanctioned,
        blocked_recent=blocked,
    )


def _last_user(
    conn: Connection, device: int, first_day: int, last_day: int, users: dict[int, str]
) -> str:
    for row in reversed(device_days(conn, device, first_day, last_day)):
        ords = ordinals_in(from_bytes(row.users))
        if ords:
            return users.get(max(ords), "")
    return ""


def machines_report(
    conn: Connection,
    catalog: Catalog,
    first_day: int,
    last_day: int,
    *,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Machines by traffic; risk level and last user for the page shown."""
    names = entity_names(conn, "device")
    usage = sorted(
        device_usage(conn, first_day, last_day),
        key=lambda r: (-(r["bytes_up"] + r["bytes_down"]), r["device"]),
    )
    page = usage[offset : offset + limit]
    users = entity_names(conn, "user")
    tags = _tags(conn)
    out = []
    for r in page:
        risk = _risk_for(conn, catalog, r["device"], last_day, tags)
        out.append(
            {
                "device": names.get(r["device"], str(r["device"])),
                "riskLevel": risk.level.value,
                "lastUser": _last_user(conn, r["device"], first_day, last_day, users),
                "transactions": int(r["transactions"]),
                "traffic": int(r["bytes_up"] + r["bytes_down"]),
                "upload": int(r["bytes_up"]),
                "download": int(r["bytes_down"]),
                "blocked": int(r["blocked"]),
                "firstSeen": _iso(r["first_seen"]),
                "lastSeen": _iso(r["last_seen"]),
            }
        )
    return out


class NotFoundError(LookupError):
    """No discovery data for that machine or user."""


def machine_report(
    conn: Connection, catalog: Catalog, name: str, first_day: int, last_day: int
) -> dict[str, Any]:
    """One machine: overview (with its risk explained), discovered apps, user and IP history."""
    device = entity_ordinal(conn, "device", name)
    if device is None:
        raise NotFoundError(f"no discovery data for machine {name!r}")
    found = device_usage(conn, first_day, last_day, device=device)
    totals = found[0] if found else None
    risk = _risk_for(conn, catalog, device, last_day, _tags(conn))
    apps: dict[str, dict[str, Any]] = {}
    for r in device_app_days(conn, first_day, last_day, device=device):
        a = apps.setdefault(
            r.app_id,
            {
                "app": r.app_id,
                "transactions": 0,
                "upload": 0,
                "download": 0,
                "first": float("inf"),
                "last": 0.0,
            },
        )
        a["transactions"] += r.transactions
        a["upload"] += r.bytes_up
        a["download"] += r.bytes_down
        a["first"] = min(a["first"], r.first_seen)
        a["last"] = max(a["last"], r.last_seen)
    users_seen: dict[int, list[int]] = {}
    ips_seen: dict[int, list[int]] = {}
    for row in device_days(conn, device, first_day, last_day):
        for o in ordinals_in(from_bytes(row.users)):
            users_seen.setdefault(o, [row.day, row.day])[1] = row.day
        for o in ordinals_in(from_bytes(row.ips)):
            ips_seen.setdefault(o, [row.day, row.day])[1] = row.day
    user_names = entity_names(conn, "user", users_seen)
    ip_names = entity_names(conn, "ip", ips_seen)
    return {
        "device": name,
        "riskLevel": risk.level.value,
        "riskScore": risk.score,
        "riskReasons": list(risk.reasons),
        "transactions": int(totals["transactions"]) if totals else 0,
        "upload": int(totals["bytes_up"]) if totals else 0,
        "download": int(totals["bytes_down"]) if totals else 0,
        "apps": sorted(
            (
                {
                    "app": a["app"],
                    "name": catalog.apps[a["app"]].name if a["app"] in catalog.apps else a["app"],
                    "transactions": a["transactions"],
                    "upload": a["upload"],
                    "download": a["download"],
                    "firstSeen": _iso(a["first"]),
                    "lastSeen": _iso(a["last"]),
                }
                for a in apps.values()
            ),
            key=lambda a: -(a["upload"] + a["download"]),
        ),
        "users": [
            {"user": user_names.get(o, ""), "firstSeen": _day(f), "lastSeen": _day(la)}
            for o, (f, la) in sorted(users_seen.items(), key=lambda x: -x[1][1])
        ],
        "ipAddresses": [
            {"ip": ip_names.get(o, ""), "firstSeen": _day(f), "lastSeen": _day(la)}
            for o, (f, la) in sorted(ips_seen.items(), key=lambda x: -x[1][1])
        ],
    }


def _day(day: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat()


def users_report(conn: Connection, first_day: int, last_day: int) -> list[dict[str, Any]]:
    names = entity_names(conn, "user")
    acc: dict[int, dict[str, Any]] = {}
    for r in user_days(conn, first_day, last_day):
        a = acc.setdefault(
            r.user, {"tx": 0, "up": 0, "down": 0, "devices": 0, "apps": set(), "last": 0.0}
        )
        a["tx"] += r.transactions
        a["up"] += r.bytes_up
        a["down"] += r.bytes_down
        a["devices"] |= from_bytes(r.devices)
        a["apps"].update(r.apps.split())
        a["last"] = max(a["last"], r.last_seen)
    rows = [
        {
            "user": names.get(u, str(u)),
            "devices": a["devices"].bit_count(),
            "apps": len(a["apps"]),
            "transactions": a["tx"],
            "traffic": a["up"] + a["down"],
            "upload": a["up"],
            "download": a["down"],
            "lastSeen": _iso(a["last"]),
        }
        for u, a in acc.items()
    ]
    return sorted(rows, key=lambda r: (-r["traffic"], r["user"]))


def user_report(conn: Connection, name: str, first_day: int, last_day: int) -> dict[str, Any]:
    """One user: the devices they used and the apps they reached (a risky user leads to devices)."""
    user = entity_ordinal(conn, "user", name)
    if user is None:
        raise NotFoundError(f"no discovery data for user {name!r}")
    devices = 0
    apps: set[str] = set()
    tx = up = down = 0
    for r in user_days(conn, first_day, last_day, user=user):
        devices |= from_bytes(r.devices)
        apps.update(r.apps.split())
        tx, up, down = tx + r.transactions, up + r.bytes_up, down + r.bytes_down
    device_names = entity_names(conn, "device", ordinals_in(devices))
    return {
        "user": name,
        "transactions": tx,
        "upload": up,
        "download": down,
        "devices": sorted(device_names.values()),
        "apps": sorted(apps),
    }


def impact(
    conn: Connection, app_ids: Sequence[str], now: dt.datetime | None = None, days: int = 7
) -> dict[str, dict[str, int]]:
    """What the last `days` days say blocking these apps would have affected."""
    first, last = day_range(days, now)
    usage = app_usage(conn, first, last, app_ids=app_ids)
    return {
        a: {"requests": t.transactions, "users": t.users, "devices": t.devices}
        for a, t in usage.items()
    }


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    """Any report's rows as CSV (header from the first row)."""
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: (";".join(map(str, v)) if isinstance(v, list) else v) for k, v in row.items()}
            )
    return out.getvalue()


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, default=str)
