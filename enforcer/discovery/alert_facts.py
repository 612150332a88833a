"""Gathering the `Facts` alert policies are checked against, after a roll-up of device events.

Reads the store inside the roll-up's transaction: the apps known before the merge (a new app
is one no report had), each machine's and user's daily upload to each app with the 30 days
before, and each machine's risk on the batch's last day and the day before.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection

from enforcer.catalog import Catalog
from enforcer.discovery.alert_policies import (
    BASELINE_DAYS,
    BlockedHit,
    DailyUpload,
    Facts,
    NewApp,
    RiskTurn,
)
from enforcer.discovery.attribute import Attributor
from enforcer.discovery.device_risk import RiskLevel
from enforcer.discovery.reports import device_risks, unsanctioned_apps
from enforcer.models import EventAction
from enforcer.policy.schema import AlertPolicy
from enforcer.rollup import Rollup
from enforcer.store.alert_reads import device_daily_uploads, known_apps, user_daily_uploads
from enforcer.store.entities import entity_ordinals

DAY = 86_400


def apps_before(conn: Connection, rollup: Rollup, policies: Sequence[AlertPolicy]) -> set[str]:
    """The batch's catalog apps that some report already had (read before the merge)."""
    if not any(p.when == "new_app" for p in policies):
        return set()
    return known_apps(conn, {app for _, app, domain in rollup.apps if app and not domain})


def gather(
    conn: Connection,
    catalog: Catalog,
    policies: Sequence[AlertPolicy],
    *,
    rollup: Rollup,
    known: Collection[str],
    rows: Sequence[Any],
    machines: Mapping[str, str],
    groups: Mapping[str, Iterable[str]],
) -> Facts:
    """The facts of a merged batch of device events (`rows`, their devices' machine names and
    groups) that the `policies` need (a kind no policy asks for is not read)."""
    kinds = {p.when for p in policies}
    machine_groups: dict[str, set[str]] = {}
    for device_id, found in groups.items():
        machine_groups.setdefault(machines.get(device_id, device_id), set()).update(found)
    facts = Facts(groups=machine_groups)
    if "new_app" in kinds:
        facts.new_apps = _new_apps(catalog, rollup, known)
    if "upload_spike" in kinds:
        if any(p.per != "user" for p in policies if p.when == "upload_spike"):
            facts.device_uploads = _device_uploads(conn, rollup)
        if any(p.per == "user" for p in policies if p.when == "upload_spike"):
            facts.user_uploads = _user_uploads(conn, catalog, rows, machines)
    if "device_high_risk" in kinds:
        facts.risk_turns = _risk_turns(conn, catalog, rollup)
    if "blocked_app" in kinds:
        facts.blocked = _blocked(catalog, rows, machines)
    return facts


def _new_apps(catalog: Catalog, rollup: Rollup, known: Collection[str]) -> list[NewApp]:
    found: dict[str, tuple[float, set[str]]] = {}
    for (_, app_id, domain), usage in rollup.apps.items():
        if not app_id or domain or app_id in known:
            continue
        first, devices = found.get(app_id, (float("inf"), set()))
        found[app_id] = (min(first, usage.usage.first_seen), devices | usage.devices)
    return [
        NewApp(
            app_id=app_id,
            risk=catalog.apps[app_id].score if app_id in catalog.apps else None,
            first_seen=first,
            machines=tuple(sorted(devices)),
        )
        for app_id, (first, devices) in sorted(found.items())
    ]


def _device_uploads(conn: Connection, rollup: Rollup) -> list[DailyUpload]:
    touched = [(m, day, app, u.last_seen) for (m, day, app), u in rollup.device_apps.items()]
    touched = [t for t in touched if rollup.device_apps[(t[0], t[1], t[2])].bytes_up > 0]
    if not touched:
        return []
    ordinals = entity_ordinals(conn, "device", {m for m, *_ in touched})
    days = [day for _, day, _, _ in touched]
    daily = device_daily_uploads(conn, set(ordinals.values()), min(days) - BASELINE_DAYS, max(days))
    out = []
    for machine, day, app_id, last_seen in touched:
        device = ordinals[machine]
        out.append(
            DailyUpload(
                who=machine,
                app_id=app_id,
                day=day,
                bytes_up=daily.get((device, day, app_id), 0),
                baseline=tuple(
                    daily.get((device, d, app_id), 0) for d in range(day - BASELINE_DAYS, day)
                ),
                last_seen=last_seen,
            )
        )
    return out


def _user_uploads(
    conn: Connection, catalog: Catalog, rows: Sequence[Any], machines: Mapping[str, str]
) -> list[DailyUpload]:
    attribute = Attributor(catalog)
    touched: dict[tuple[str, int, str], tuple[float, str]] = {}
    for r in rows:
        app_id, _ = attribute(r.domain)
        if not r.user or not app_id or r.bytes_up <= 0:
            continue
        at = r.time.timestamp()
        key = (r.user, int(at) // DAY, app_id)
        if at >= touched.get(key, (0.0, ""))[0]:
            touched[key] = (at, machines.get(r.device_id, r.device_id))
    if not touched:
        return []
    days = [day for _, day, _ in touched]
    by_domain = user_daily_uploads(
        conn, {u for u, _, _ in touched}, min(days) - BASELINE_DAYS, max(days)
    )
    daily: dict[tuple[str, int, str], int] = {}
    for (user, day, domain), up in by_domain.items():
        app_id, _ = attribute(domain)
        if app_id:
            daily[(user, day, app_id)] = daily.get((user, day, app_id), 0) + up
    return [
        DailyUpload(
            who=user,
            app_id=app_id,
            day=day,
            bytes_up=daily.get((user, day, app_id), 0),
            baseline=tuple(
                daily.get((user, d, app_id), 0) for d in range(day - BASELINE_DAYS, day)
            ),
            last_seen=at,
            machine=machine,
        )
        for (user, day, app_id), (at, machine) in sorted(touched.items())
    ]


def _risk_turns(conn: Connection, catalog: Catalog, rollup: Rollup) -> list[RiskTurn]:
    if not rollup.devices:
        return []
    last_day = max(day for day, _ in rollup.devices)
    seen = {m: d.usage.last_seen for (day, m), d in rollup.devices.items() if day == last_day}
    ordinals = entity_ordinals(conn, "device", seen)
    unsanctioned = unsanctioned_apps(conn)
    now = device_risks(conn, catalog, list(ordinals.values()), last_day, unsanctioned)
    high = [o for o, risk in now.items() if risk.level == RiskLevel.HIGH]
    before = device_risks(conn, catalog, high, last_day - 1, unsanctioned)
    names = {o: m for m, o in ordinals.items()}
    return [
        RiskTurn(machine=names[o], reasons=now[o].reasons, time=seen[names[o]])
        for o in sorted(high)
        if before[o].level != RiskLevel.HIGH
    ]


def _blocked(
    catalog: Catalog, rows: Sequence[Any], machines: Mapping[str, str]
) -> list[BlockedHit]:
    attribute = Attributor(catalog)
    hits: dict[tuple[str, str, str], list[Any]] = {}
    for r in rows:
        if r.action != EventAction.BLOCKED.value:
            continue
        app_id = r.app_id or attribute(r.domain)[0]
        if not app_id:
            continue
        key = (machines.get(r.device_id, r.device_id), r.user, app_id)
        hits.setdefault(key, []).append(r)
    return [
        BlockedHit(
            machine=machine,
            user=user,
            app_id=app_id,
            domain=max(found, key=lambda r: r.time).domain,
            count=len(found),
            last_seen=max(r.time for r in found).timestamp(),
        )
        for (machine, user, app_id), found in sorted(hits.items())
    ]
