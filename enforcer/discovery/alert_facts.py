"""Gathering the `Facts` alert policies are checked against, after a roll-up of any source.

Reads the store inside the roll-up's transaction: the apps known before the merge (a new app
is one no report had), each machine's and user's daily upload to each app with the 30 days
before, and each machine's risk on each day of the batch and the day before.

`gather` is for the devices' events (their raw rows give the blocked hits' domains and the
users' uploads); `gather_logs` for uploaded and collected logs, from the roll-up and the rollup
tables: a user's upload spike (``per: user``) from logs compares the user's day with the
rolled-up uploads per user and app (``discovery_user_app_daily``, kept since migration 0018)
of the 30 days before. Users are named as the reports name them
(`enforcer.discovery.identity`), whatever form a log or device gave.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
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
from enforcer.discovery.reports import risk_turns, unsanctioned_apps
from enforcer.models import EventAction
from enforcer.policy.schema import AlertPolicy
from enforcer.rollup import Rollup
from enforcer.store.alert_reads import (
    device_daily_uploads,
    known_apps,
    raw_forms,
    trusted_machine_groups,
    user_app_daily_uploads,
    user_daily_uploads,
)
from enforcer.store.entities import entity_ordinals

DAY = 86_400
RISK_DAYS = 31
"""The last days of a batch whose risk turns are checked (an upload may span months)."""


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
    users: Callable[[str], str] = str,
) -> Facts:
    """The facts of a merged batch of device events (`rows`, their devices' machine names and
    groups) that the `policies` need (a kind no policy asks for is not read); `users` names a
    raw user name as the reports do."""
    kinds = {p.when for p in policies}
    machine_groups: dict[str, set[str]] = {}
    for device_id, found in groups.items():
        machine_groups.setdefault(machines.get(device_id, device_id), set()).update(found)
    facts = Facts(groups=machine_groups)
    _common(conn, catalog, policies, facts, rollup, known)
    if any(p.when == "upload_spike" and p.per == "user" for p in policies):
        facts.user_uploads = _user_uploads(conn, catalog, rows, machines, users)
    if "blocked_app" in kinds:
        facts.blocked = _blocked(catalog, rows, machines, users)
    return facts


def gather_logs(
    conn: Connection,
    catalog: Catalog,
    policies: Sequence[AlertPolicy],
    *,
    rollup: Rollup,
    known: Collection[str],
) -> Facts:
    """The facts of a merged roll-up of log records (an upload's, a syslog collector's) that
    the `policies` need. A log machine is in the groups of the trusted devices of its name."""
    machines = {m for _, m in rollup.devices}
    groups = trusted_machine_groups(conn, machines) if any(p.scope for p in policies) else {}
    facts = Facts(groups=groups)
    _common(conn, catalog, policies, facts, rollup, known)
    if any(p.when == "upload_spike" and p.per == "user" for p in policies):
        facts.user_uploads = _log_user_uploads(conn, rollup)
    if any(p.when == "blocked_app" for p in policies):
        facts.blocked = [
            BlockedHit(
                machine=machine, user=user, app_id=app_id, domain="", count=count,
                last_seen=last_seen,
            )
            for (machine, user, app_id), (count, last_seen) in sorted(rollup.blocked.items())
        ]  # fmt: skip
    return facts


def _common(
    conn: Connection,
    catalog: Catalog,
    policies: Sequence[AlertPolicy],
    facts: Facts,
    rollup: Rollup,
    known: Collection[str],
) -> None:
    """The facts every source gives from its roll-up: new apps, machines' uploads, risk turns."""
    kinds = {p.when for p in policies}
    if "new_app" in kinds:
        facts.new_apps = _new_apps(catalog, rollup, known)
    if any(p.when == "upload_spike" and p.per != "user" for p in policies):
        facts.device_uploads = _device_uploads(conn, rollup)
    if "device_high_risk" in kinds:
        facts.risk_turns = _risk_turns(conn, catalog, rollup)


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


def _log_user_uploads(conn: Connection, rollup: Rollup) -> list[DailyUpload]:
    """Each user's upload to each app on each day of a roll-up of logs (the day's total over
    every report, after the merge) with the 30 days before, from the rolled-up uploads per
    user and app; the machine is the one of the user's last transfer to the app that day."""
    if not rollup.user_apps:
        return []
    ordinals = entity_ordinals(conn, "user", {u for u, _, _ in rollup.user_apps})
    days = [day for _, day, _ in rollup.user_apps]
    daily = user_app_daily_uploads(
        conn, set(ordinals.values()), min(days) - BASELINE_DAYS, max(days)
    )
    out = []
    for (user, day, app_id), up in sorted(rollup.user_apps.items()):
        ordinal = ordinals[user]
        out.append(
            DailyUpload(
                who=user,
                app_id=app_id,
                day=day,
                bytes_up=daily.get((ordinal, day, app_id), up.bytes_up),
                baseline=tuple(
                    daily.get((ordinal, d, app_id), 0) for d in range(day - BASELINE_DAYS, day)
                ),
                last_seen=up.last_seen,
                machine=up.machine,
            )
        )
    return out


def _user_uploads(
    conn: Connection,
    catalog: Catalog,
    rows: Sequence[Any],
    machines: Mapping[str, str],
    users: Callable[[str], str],
) -> list[DailyUpload]:
    attribute = Attributor(catalog)
    touched: dict[tuple[str, int, str], tuple[float, str]] = {}
    for r in rows:
        app_id, _ = attribute(r.domain)
        user = users(r.user) if r.user else ""
        if not user or not app_id or r.bytes_up <= 0:
            continue
        at = r.time.timestamp()
        key = (user, int(at) // DAY, app_id)
        if at >= touched.get(key, (0.0, ""))[0]:
            touched[key] = (at, machines.get(r.device_id, r.device_id))
    if not touched:
        return []
    days = [day for _, day, _ in touched]
    # The events keep each name as the device sent it: read every form seen behind the users.
    named = {u for u, _, _ in touched}
    forms = named | {r.user for r in rows if r.user} | raw_forms(conn, named)
    by_domain = user_daily_uploads(conn, forms, min(days) - BASELINE_DAYS, max(days))
    daily: dict[tuple[str, int, str], int] = {}
    for (raw, day, domain), up in by_domain.items():
        app_id, _ = attribute(domain)
        user = users(raw)
        if app_id and user in named:
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
    """Machines high on a day of the batch and not the day before (each machine once, at its
    first turn): an upload of a month of logs is checked day by day, as the daemon would have."""
    if not rollup.devices:
        return []
    by_day: dict[int, dict[str, float]] = {}
    for (day, machine), d in rollup.devices.items():
        by_day.setdefault(day, {})[machine] = d.usage.last_seen
    ordinals = entity_ordinals(conn, "device", {m for _, m in rollup.devices})
    names = {o: m for m, o in ordinals.items()}
    days = sorted(by_day)[-RISK_DAYS:]
    wanted = {day: [ordinals[m] for m in by_day[day]] for day in days}
    turned: dict[str, RiskTurn] = {}
    for (device, day), risk in sorted(
        risk_turns(conn, catalog, wanted, unsanctioned_apps(conn)).items(), key=lambda t: t[0][1]
    ):
        machine = names[device]
        if machine not in turned:
            turned[machine] = RiskTurn(
                machine=machine, reasons=risk.reasons, time=by_day[day][machine]
            )
    return [turned[m] for m in sorted(turned)]


def _blocked(
    catalog: Catalog,
    rows: Sequence[Any],
    machines: Mapping[str, str],
    users: Callable[[str], str],
) -> list[BlockedHit]:
    attribute = Attributor(catalog)
    hits: dict[tuple[str, str, str], list[Any]] = {}
    for r in rows:
        if r.action != EventAction.BLOCKED.value:
            continue
        app_id = r.app_id or attribute(r.domain)[0]
        if not app_id:
            continue
        key = (machines.get(r.device_id, r.device_id), users(r.user) if r.user else "", app_id)
        hits.setdefault(key, []).append(r)
    return [
        BlockedHit(
            machine=machine,
            user=user,
            app_id=app_id,
            domain=max(found, key=lambda r: r.time).domain,
            count=len(found),
            last_seen=max(r.time for r in found).timestamp(),
            forms=tuple(sorted({r.user for r in found if r.user and r.user != user})),
        )
        for (machine, user, app_id), found in sorted(hits.items())
    ]
