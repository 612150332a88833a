"""The Cloud Discovery reports: discovered apps, unrecognised domains, machines, users, one
machine or user, the impact of blocking apps; and the batched reads behind the console's tables.

Each report is a list of plain dicts (the same rows for the CLI table, CSV, JSON and the API);
`to_csv` and `to_json` write any of them. Time ranges are whole UTC days ending today. A page of
machines or users needs per-row figures (risk, last user, device and app counts): `device_risks`,
`last_users` and `user_counts` read them for a whole page in one query each (primary-key lookups)
instead of one range scan per row.

A machine is named by its hostname; the enrolled devices behind a name (`machine_devices`) give
its OS, groups, the revision it applied and its time to enforce (`enrolment_columns`). The
programs behind an app's or a machine's traffic (`top_processes`) come from the raw events.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection

from enforcer.catalog import Catalog
from enforcer.discovery.attribute import is_junk_domain
from enforcer.discovery.device_risk import DeviceAppDay, DeviceRisk, RiskLevel, device_risk
from enforcer.discovery.identity import UserNames
from enforcer.store.devices import DeviceStatus, list_devices
from enforcer.store.encoding import bits_of, day_of, from_bytes, ordinals_in
from enforcer.store.entities import entity_names, entity_ordinal, entity_search
from enforcer.store.indicators import read_app_tags
from enforcer.store.processes import top_processes as read_top_processes
from enforcer.store.queries import (
    Totals,
    app_members,
    app_usage,
    device_app_days,
    device_app_history,
    device_day_last_users,
    device_day_members,
    device_days,
    device_usage,
    machine_sources,
    user_day_members,
    user_days,
    user_forms,
    user_sums,
)
from enforcer.store.queries import distinct_users as count_distinct_users
from enforcer.store.reviews import apps_with_custom_tag
from enforcer.store.trust import machine_name, trust_of, unverified_device
from enforcer.textsafe import csv_cell


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
    conn: Connection, catalog: Catalog, first_day: int, last_day: int, *, custom_tag: str = ""
) -> list[dict[str, Any]]:
    """Discovered apps in the range, most traffic first; with `custom_tag`, only the apps the
    policy (as last applied) gives that custom tag."""
    tags = _tags(conn)
    only = apps_with_custom_tag(conn, custom_tag) if custom_tag else None
    rows = []
    for app_id, t in app_usage(conn, first_day, last_day).items():
        if only is not None and app_id not in only:
            continue
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


def app_report(
    conn: Connection, catalog: Catalog, app_id: str, first_day: int, last_day: int
) -> dict[str, Any]:
    """One app: its usage in the range, the machines and users that reached it, and the
    programs that made its traffic (`top_processes`)."""
    app = catalog.apps.get(app_id)
    usage = app_usage(conn, first_day, last_day, app_ids=[app_id]).get(app_id)
    if app is None and usage is None:
        raise NotFoundError(f"no catalog app and no discovery data for app {app_id!r}")
    devices, users = app_member_names(conn, app_id, first_day, last_day)
    t = usage or Totals()
    return {
        "app": app_id,
        "name": app.name if app else app_id,
        "category": app.category if app else "",
        "risk": app.score if app else None,
        "tag": _tags(conn).get(app_id, ""),
        "transactions": t.transactions,
        "upload": t.bytes_up,
        "download": t.bytes_down,
        "blocked": t.blocked,
        "firstSeen": _iso(t.first_seen),
        "lastSeen": _iso(t.last_seen),
        "machines": devices,
        "users": users,
        "topProcesses": top_processes(conn, first_day, last_day, app_id=app_id),
    }


def app_member_names(
    conn: Connection, app_id: str, first_day: int, last_day: int, limit: int = 200
) -> tuple[list[str], list[str]]:
    """Names of the machines and users that reached an app (OR of the day bitsets), sorted; at
    most `limit` of each."""
    devices, users = app_members(conn, app_id=app_id, first_day=first_day, last_day=last_day)
    names = []
    for kind, bits in (("device", devices), ("user", users)):
        found = entity_names(conn, kind, ordinals_in(bits)[:limit])
        names.append(sorted(found.values()))
    return names[0], names[1]


def domains_report(conn: Connection, first_day: int, last_day: int) -> list[dict[str, Any]]:
    """Unrecognised domains (no catalog app), ranked by traffic: candidates for custom apps."""
    return domains_and_junk(conn, first_day, last_day)[0]


def domains_and_junk(
    conn: Connection, first_day: int, last_day: int
) -> tuple[list[dict[str, Any]], int]:
    """`domains_report`, and the transactions it left out: names that cannot be a cloud app
    (wildcards, reverse lookups, local and single-label names, service names:
    `attribute.is_junk_domain`)."""
    usage = app_usage(conn, first_day, last_day, unrecognised=True)
    junk = [domain for domain in usage if is_junk_domain(domain)]
    left_out = sum(usage.pop(domain).transactions for domain in junk)
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
        for domain, t in usage.items()
    ]
    return sorted(rows, key=lambda r: (-r["traffic"], r["domain"])), left_out


def unsanctioned_apps(conn: Connection) -> set[str]:
    """Apps tagged unsanctioned for all devices (a device-risk signal)."""
    return {a for a, tag in _tags(conn).items() if tag == "unsanctioned"}


def device_risks(
    conn: Connection,
    catalog: Catalog,
    devices: Sequence[int],
    last_day: int,
    unsanctioned: set[str],
    *,
    first_day: int | None = None,
) -> dict[int, DeviceRisk]:
    """Risk of each device: the period `first_day`..`last_day` (default: the last day alone)
    against the device's own 30-day baseline before the period, in one query."""
    if not devices:
        return {}
    first = last_day if first_day is None else min(first_day, last_day)
    history, scores = _histories(conn, catalog, devices, first - 30, last_day)
    return {
        d: device_risk(
            rows,
            recent_from=first,
            app_scores=scores,
            unsanctioned=unsanctioned,
            blocked_recent=sum(h.blocked for h in rows if h.day >= first),
        )
        for d, rows in history.items()
    }


def risk_turns(
    conn: Connection, catalog: Catalog, wanted: Mapping[int, Sequence[int]], unsanctioned: set[str]
) -> dict[tuple[int, int], DeviceRisk]:
    """(device, day) -> its risk that day, for the devices and days in `wanted` (day ->
    devices) whose risk is high that day and was not the day before: each day alone against
    its 30 days before, as `device_risks` computes it, from one read of the history."""
    devices = sorted({d for found in wanted.values() for d in found})
    if not devices:
        return {}
    history, scores = _histories(conn, catalog, devices, min(wanted) - 31, max(wanted))

    def risk(rows: list[DeviceAppDay], day: int) -> DeviceRisk:
        rows = [h for h in rows if h.day <= day]
        return device_risk(
            rows,
            recent_from=day,
            app_scores=scores,
            unsanctioned=unsanctioned,
            blocked_recent=sum(h.blocked for h in rows if h.day == day),
        )

    out: dict[tuple[int, int], DeviceRisk] = {}
    for day, found in wanted.items():
        for device in found:
            now = risk(history[device], day)
            if now.level == RiskLevel.HIGH and risk(history[device], day - 1).level != now.level:
                out[(device, day)] = now
    return out


def _histories(
    conn: Connection, catalog: Catalog, devices: Sequence[int], first_day: int, last_day: int
) -> tuple[dict[int, list[DeviceAppDay]], dict[str, float]]:
    """Each device's per-app days over the range, and the risk scores of the apps in them."""
    history: dict[int, list[DeviceAppDay]] = {d: [] for d in devices}
    # Plain tuples: a page reads ~30,000 rows, and Row attribute access would double the time.
    for device, *usage in device_app_history(
        conn, devices=devices, first_day=first_day, last_day=last_day
    ):
        history[device].append(DeviceAppDay(*usage))
    seen = {h.app_id for rows in history.values() for h in rows}
    return history, {a: catalog.apps[a].score for a in seen if a in catalog.apps}


def last_users(conn: Connection, devices: Sequence[int], first: int, last: int) -> dict[int, str]:
    """The last user seen on each device in the range: the latest by time (each device-day
    keeps its last user and when; days rolled up before that was kept fall back to their
    highest user ordinal, and count as the start of their day)."""
    if not devices:
        return {}
    latest: dict[int, tuple[float, int]] = {}
    for device, user, seen, bits in device_day_last_users(
        conn, devices=devices, first_day=first, last_day=last
    ):
        if user < 0:
            ords = ordinals_in(bits)
            if not ords:
                continue
            user = max(ords)
        if (seen, user) > latest.get(device, (-1.0, -1)):
            latest[device] = (seen, user)
    names = entity_names(conn, "user", {o for _, o in latest.values()})
    return {d: names.get(o, "") for d, (_, o) in latest.items()}


def machine_devices(
    conn: Connection,
    names: Sequence[str],
    *,
    stale_after: dt.timedelta,
    now: dt.datetime | None = None,
) -> dict[str, list[DeviceStatus]]:
    """The enrolled devices behind each machine name: those whose traffic is rolled up under
    it (`enforcer.store.trust.machine_name`: a trusted device's hostname, an untrusted one's
    ``hostname (device ID)``, or the id of a device without a hostname)."""
    found: dict[str, list[DeviceStatus]] = {name: [] for name in names}
    keys = [k for name in found for k in (name, unverified_device(name)) if k]
    unique = list(dict.fromkeys(keys))
    statuses: list[DeviceStatus] = []
    for start in range(0, len(unique), 500):
        statuses += list_devices(
            conn, stale_after=stale_after, now=now, machines=unique[start : start + 500],
            limit=100_000,
        )  # fmt: skip
    trust = trust_of(conn, {s.device.device_id for s in statuses})
    for status in statuses:
        d = status.device
        machine = machine_name(d.hostname, d.device_id, trust.get(d.device_id, ("", ""))[1])
        if machine in found:
            found[machine].append(status)
    return found


def machine_ips(
    conn: Connection, devices: Sequence[int], first: int, last: int
) -> dict[int, list[str]]:
    """The addresses each device had in the range, sorted."""
    if not devices:
        return {}
    bits: dict[int, int] = {}
    for device, _, ips in device_day_members(conn, first_day=first, last_day=last, devices=devices):
        bits[device] = bits.get(device, 0) | ips
    names = entity_names(conn, "ip", {o for b in bits.values() for o in ordinals_in(b)})
    return {d: sorted(names[o] for o in ordinals_in(b) if o in names) for d, b in bits.items()}


def matching_machines(
    conn: Connection, search: str, first: int, last: int, *, names: UserNames | None = None
) -> set[int]:
    """The devices whose hostname, or an address or user of theirs in the range, contains
    `search` (any case; a user's name normalised as the roll-up does)."""
    text = search.strip()
    if not text:
        return set()
    found = set(entity_search(conn, "device", text))
    ips = bits_of(entity_search(conn, "ip", text))
    users = bits_of(entity_search(conn, "user", text)) | bits_of(
        entity_search(conn, "user", (names or UserNames())(text))
    )
    if ips or users:
        for device, user_bits, ip_bits in device_day_members(conn, first_day=first, last_day=last):
            if user_bits & users or ip_bits & ips:
                found.add(device)
    return found


def enrolment_columns(statuses: Sequence[DeviceStatus]) -> dict[str, Any]:
    """A machine's enrolment columns, from its most recently seen device (empty for a machine
    known only from uploaded logs): OS, groups, applied revision, time to enforce, stale."""
    if not statuses:
        return {
            "os": "", "groups": [], "appliedRevision": None, "timeToEnforce": None,
            "stale": None,
        }  # fmt: skip
    latest = max(statuses, key=lambda s: s.device.last_seen).as_json()
    return {
        "os": f"{latest['os']} {latest['osVersion']}".strip(),
        "groups": latest["groups"],
        "appliedRevision": latest["appliedRevision"],
        "timeToEnforce": latest["timeToEnforce"],
        "stale": latest["stale"],
    }


def _day_bounds(first_day: int, last_day: int) -> tuple[dt.datetime, dt.datetime]:
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return epoch + dt.timedelta(days=first_day), epoch + dt.timedelta(days=last_day + 1)


def top_processes(
    conn: Connection,
    first_day: int,
    last_day: int,
    *,
    app_id: str | None = None,
    device_ids: Sequence[str] | None = None,
    limit: int = 10,
) -> list[dict[str, Any]]:
    """The programs with the most requests to an app, or on some devices, in the range (from
    intercepted traffic: only its events name their process)."""
    start, end = _day_bounds(first_day, last_day)
    rows = read_top_processes(
        conn, start=start, end=end, app_id=app_id, device_ids=device_ids, limit=limit
    )
    return [
        {
            "process": p.process_name,
            "path": p.process_path,
            "requests": p.requests,
            "traffic": p.bytes_up + p.bytes_down,
            "upload": p.bytes_up,
            "download": p.bytes_down,
            "devices": p.devices,
            "users": p.users,
            "lastSeen": p.last_seen.isoformat(timespec="seconds"),
        }
        for p in rows
    ]


def machines_report(
    conn: Connection,
    catalog: Catalog,
    first_day: int,
    last_day: int,
    *,
    stale_after: dt.timedelta,
    limit: int = 100,
    offset: int = 0,
    search: str | None = None,
    names: UserNames | None = None,
) -> list[dict[str, Any]]:
    """Machines by traffic (those whose hostname, address or user contains `search`, when
    given); risk level, last user, addresses and enrolment columns for the page shown."""
    usage = device_usage(conn, first_day, last_day)
    if search:
        matching = matching_machines(conn, search, first_day, last_day, names=names)
        usage = [r for r in usage if r["device"] in matching]
    usage.sort(key=lambda r: (-(r["bytes_up"] + r["bytes_down"]), r["device"]))
    page = usage[offset : offset + limit]
    ordinals = [r["device"] for r in page]
    names_of = entity_names(conn, "device", ordinals)
    risks = device_risks(
        conn, catalog, ordinals, last_day, unsanctioned_apps(conn), first_day=first_day
    )
    users = last_users(conn, ordinals, first_day, last_day)
    ips = machine_ips(conn, ordinals, first_day, last_day)
    shown = [names_of.get(r["device"], str(r["device"])) for r in page]
    enrolled = machine_devices(conn, shown, stale_after=stale_after)
    out = []
    for name, r in zip(shown, page, strict=True):
        out.append(
            {
                "device": name,
                "ips": ips.get(r["device"], []),
                "riskLevel": risks[r["device"]].level.value,
                "lastUser": users.get(r["device"], ""),
                **enrolment_columns(enrolled[name]),
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


def matching_users(conn: Connection, search: str, *, names: UserNames | None = None) -> set[int]:
    """The users whose name contains `search` as the roll-up normalises it (``CORP\\erin``
    finds erin), any case."""
    text = (names or UserNames())(search.strip())
    return set(entity_search(conn, "user", text)) if text else set()


def machine_count(
    conn: Connection,
    first_day: int,
    last_day: int,
    *,
    search: str | None = None,
    names: UserNames | None = None,
) -> int:
    """How many machines `machines_report` has rows for (all pages)."""
    usage = device_usage(conn, first_day, last_day)
    if not search:
        return len(usage)
    matching = matching_machines(conn, search, first_day, last_day, names=names)
    return sum(1 for r in usage if r["device"] in matching)


class NotFoundError(LookupError):
    """No discovery data for that machine or user."""


def machine_report(
    conn: Connection,
    catalog: Catalog,
    name: str,
    first_day: int,
    last_day: int,
    *,
    stale_after: dt.timedelta,
) -> dict[str, Any]:
    """One machine: overview (with its risk explained), its enrolled devices, discovered apps,
    top processes, user and IP history. A machine is known from discovery data or enrolment."""
    enrolled = machine_devices(conn, [name], stale_after=stale_after)[name]
    device = entity_ordinal(conn, "device", name)
    if device is None and not enrolled:
        raise NotFoundError(f"no discovery data for machine {name!r}{_untrusted_hint(conn, name)}")
    found = device_usage(conn, first_day, last_day, device=device) if device is not None else []
    totals = found[0] if found else None
    if device is not None:
        risk = device_risks(
            conn, catalog, [device], last_day, unsanctioned_apps(conn), first_day=first_day
        )[device]
    else:  # enrolled, but no traffic rolled up yet
        risk = device_risk(
            [], recent_from=last_day, app_scores={}, unsanctioned=set(), blocked_recent=0
        )
    device_ids = sorted({s.device.device_id for s in enrolled} | {name})
    apps: dict[str, dict[str, Any]] = {}
    for r in device_app_days(conn, first_day, last_day, device=device) if device else ():
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
    for row in device_days(conn, device, first_day, last_day) if device is not None else ():
        for o in ordinals_in(from_bytes(row.users)):
            users_seen.setdefault(o, [row.day, row.day])[1] = row.day
        for o in ordinals_in(from_bytes(row.ips)):
            ips_seen.setdefault(o, [row.day, row.day])[1] = row.day
    user_names = entity_names(conn, "user", users_seen)
    ip_names = entity_names(conn, "ip", ips_seen)
    return {
        "device": name,
        **enrolment_columns(enrolled),
        "enrolledDevices": [s.as_json() for s in enrolled],
        "sources": machine_source_rows(conn, name),
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
        "topProcesses": top_processes(conn, first_day, last_day, device_ids=device_ids),
        "users": [
            {"user": user_names.get(o, ""), "firstSeen": _day(f), "lastSeen": _day(la)}
            for o, (f, la) in sorted(users_seen.items(), key=lambda x: -x[1][1])
        ],
        "ipAddresses": [
            {"ip": ip_names.get(o, ""), "firstSeen": _day(f), "lastSeen": _day(la)}
            for o, (f, la) in sorted(ips_seen.items(), key=lambda x: -x[1][1])
        ],
    }


def _untrusted_hint(conn: Connection, hostname: str) -> str:
    """For a machine not found: the machines of untrusted devices that report this hostname."""
    statuses = list_devices(conn, stale_after=dt.timedelta(days=1), machines=[hostname])
    ids = [s.device.device_id for s in statuses if s.device.hostname == hostname]
    found = [machine_name(hostname, d, t) for d, (_, t) in trust_of(conn, ids).items() if not t]
    if not found:
        return ""
    listed = ", ".join(repr(m) for m in sorted(found))
    return f" (devices not trusted with that hostname are the machines {listed})"


def machine_source_rows(conn: Connection, name: str) -> list[dict[str, Any]]:
    """Where a machine's traffic came from: ``logs`` and each ``device ID`` (with whether the
    server trusts that device's hostname: ``group-secret``, ``admin``, or "" for no)."""
    rows = machine_sources(conn, name)
    ids = [source.removeprefix("device ") for source, _, _ in rows if source.startswith("device ")]
    trust = trust_of(conn, ids)
    return [
        {
            "source": source,
            "trustedBy": trust.get(source.removeprefix("device "), ("", ""))[1]
            if source.startswith("device ")
            else None,
            "firstSeen": _iso(first),
            "lastSeen": _iso(last),
        }
        for source, first, last in rows
    ]


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


def user_report(
    conn: Connection, name: str, first_day: int, last_day: int, *, names: UserNames | None = None
) -> dict[str, Any]:
    """One user: the devices they used and the apps they reached (a risky user leads to
    devices), and the raw forms of their name seen in logs and events. `name` may be any of
    those forms (`names` normalises it as the roll-up did)."""
    canonical = (names or UserNames())(name)
    user = entity_ordinal(conn, "user", canonical)
    if user is None:  # rolled up under its raw form (before names were normalised)
        canonical, user = name, entity_ordinal(conn, "user", name)
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
        "user": canonical,
        "transactions": tx,
        "upload": up,
        "download": down,
        "devices": sorted(device_names.values()),
        "apps": sorted(apps),
        "forms": [
            {"form": form, "firstSeen": _iso(first), "lastSeen": _iso(last)}
            for form, first, last in user_forms(conn, canonical)
        ],
    }


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
            "lastSeen": _iso(r["last_seen"]),
        }
        for r in device_usage(conn, first, last)
    ]


def user_totals(conn: Connection, first: int, last: int) -> list[dict[str, Any]]:
    """Every user's sums over the range (SQL aggregation; device and app counts come per page:
    `user_counts`)."""
    names = entity_names(conn, "user")
    return [
        {
            "user": names.get(user, str(user)),
            "ordinal": user,
            "transactions": int(tx),
            "traffic": int(up + down),
            "upload": int(up),
            "download": int(down),
            "lastSeen": _iso(last_seen),
        }
        for user, tx, up, down, last_seen in user_sums(conn, first_day=first, last_day=last)
    ]


def user_counts(
    conn: Connection, users: Sequence[int], first: int, last: int
) -> dict[int, tuple[int, int]]:
    """(distinct devices, distinct apps) of each user over the range, in one query."""
    if not users:
        return {}
    devices: dict[int, int] = {}
    apps: dict[int, set[str]] = {}
    for user, bits, names in user_day_members(conn, users=users, first_day=first, last_day=last):
        devices[user] = devices.get(user, 0) | bits
        apps.setdefault(user, set()).update(names.split())
    return {x: (devices.get(x, 0).bit_count(), len(apps.get(x, ()))) for x in users}


def distinct_users(conn: Connection, first: int, last: int) -> int:
    """Users seen in the range (OR of the apps' daily user bitsets)."""
    return count_distinct_users(conn, first_day=first, last_day=last)


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
    """Any report's rows as CSV (header from the first row); names from devices and logs
    cannot run as spreadsheet formulas (`enforcer.textsafe.csv_cell`)."""
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    k: csv_cell(";".join(map(str, v)) if isinstance(v, list) else v)
                    for k, v in row.items()
                }
            )
    return out.getvalue()


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, default=str)
