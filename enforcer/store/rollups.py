"""Merging a batch's `Rollup` into the discovery rollup tables, one transaction per merge.

Each table is upserted by primary key (read the keys' rows, combine, delete, insert), which
both back ends do the same way; counters saturate at `MAX_COUNTER`, bitsets are ORed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    cast,
    delete,
    func,
    insert,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from enforcer.rollup import Rollup, Usage
from enforcer.store.encoding import bits_of, from_bytes, to_bytes
from enforcer.store.entities import entity_ordinals, storable
from enforcer.store.tables.discovery import (
    APP_DAY,
    CURSOR,
    DEV_APP,
    DEV_DAY,
    HOUR,
    MACHINE_SOURCE,
    USER_APP,
    USER_DAY,
    USER_FORM,
)


def lock_merges(conn: Connection) -> None:
    """Serialise rollup merges (the cursor table's lock row, created once: two first merges
    at once both find no row, so it is inserted with ON CONFLICT DO NOTHING, then locked)."""
    lock = update(CURSOR).where(CURSOR.c.name == "merge-lock")
    if conn.execute(lock.values(last_event_id=CURSOR.c.last_event_id)).rowcount:
        return
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(
        dialect_insert(CURSOR)
        .values(name="merge-lock", last_event_id=0)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    conn.execute(lock.values(last_event_id=CURSOR.c.last_event_id))


def merge_rollup(engine: Engine, rollup: Rollup, *, report: int = 0) -> None:
    """Add a batch's aggregates to the rollup tables, in one transaction, under the named
    report `report` (`enforcer.store.named_reports`; 0: none)."""
    with engine.begin() as conn:
        merge_rollup_in(conn, rollup, report=report)


def merge_rollup_in(
    conn: Connection, rollup: Rollup, *, report: int = 0, fresh: bool = False
) -> None:
    """`merge_rollup` inside the caller's transaction (to commit it with other writes).

    `fresh`: the report has no rows yet (an upload's new snapshot, at its first merge), so no
    stored row is read to be combined: on a million-line upload that read was a tenth of the
    merge."""
    lock_merges(conn)
    devices = entity_ordinals(
        conn,
        "device",
        [d for _, d in rollup.devices]
        + [d for a in rollup.apps.values() for d in a.devices]
        + [d for u in rollup.users.values() for d in u.devices],
    )
    users = entity_ordinals(
        conn,
        "user",
        [u for _, u in rollup.users] + [u for a in rollup.apps.values() for u in a.users],
    )
    ips = entity_ordinals(
        conn,
        "ip",
        [i for a in rollup.apps.values() for i in a.ips]
        + [i for d in rollup.devices.values() for i in d.ips],
    )
    _merge_apps(conn, rollup, devices, users, ips, report, fresh)
    _merge_devices(conn, rollup, devices, users, ips, report, fresh)
    _merge_device_apps(conn, rollup, devices, report, fresh)
    _merge_users(conn, rollup, devices, users, report, fresh)
    _merge_user_apps(conn, rollup, users, report, fresh)
    _merge_hours(conn, rollup, report, fresh)
    _merge_spans(conn, USER_FORM, ("user", "form"), rollup.user_forms)
    _merge_spans(conn, MACHINE_SOURCE, ("machine", "source"), rollup.sources)


_SUMS = ("transactions", "bytes_up", "bytes_down", "blocked")

MAX_COUNTER = 1 << 53
"""Where a stored counter saturates. Parsers and the events API accept counts up to 2**62-2**63
(a device or a log line may claim anything), and two such values summed no longer fit the
columns' signed 64 bits: the merge failed, refusing the whole upload or (for device events)
stopping the daemon's rollup at that event forever. 2**53 bytes (8 PiB) per row is beyond real
traffic, and a report's SQL SUM over up to 1,024 saturated rows still fits in 64 bits."""


def _saturated(value: int) -> int:
    return value if value < MAX_COUNTER else MAX_COUNTER


def _usage_values(u: Usage, *, blocked: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "transactions": _saturated(u.transactions),
        "bytes_up": _saturated(u.bytes_up),
        "bytes_down": _saturated(u.bytes_down),
        "first_seen": u.first_seen,
        "last_seen": u.last_seen,
    }
    if blocked:
        out["blocked"] = _saturated(u.blocked)
    return out


def _combine(
    new: dict[str, Any], old: Mapping[str, Any], bitsets: Sequence[str] = ()
) -> dict[str, Any]:
    for name in _SUMS:
        if name in new:
            new[name] = _saturated(new[name] + old[name])
    new["first_seen"] = min(new["first_seen"], old["first_seen"])
    new["last_seen"] = max(new["last_seen"], old["last_seen"])
    for name in bitsets:
        new[name] = to_bytes(from_bytes(new[name]) | from_bytes(old[name]))
    return new


def replace_rows(
    conn: Connection,
    table: Any,
    pk: Sequence[str],
    rows: list[dict[str, Any]],
    bitsets: Sequence[str] = (),
    report: int | None = None,
    *,
    fresh: bool = False,
) -> None:
    """Upsert by primary key: read the existing rows of these keys, combine, delete, insert.
    With `report`, the rows are that report's (the report is part of the key); `fresh`: the
    table has none of these keys (nothing is read)."""
    if not rows:
        return
    if report is not None:
        pk = (*pk, "report")
        for row in rows:
            row["report"] = report
    unique: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:  # names made storable can meet (a NUL and a U+FFFD): one row per key
        key = tuple(row[c] for c in pk)
        unique[key] = _combine(row, unique[key], bitsets) if key in unique else row
    existing = (
        {}
        if fresh
        else {
            tuple(r._mapping[c] for c in pk): dict(r._mapping)
            for r in _by_keys(conn, table, pk, list(unique), select(table))
        }
    )
    if existing:
        for key, old in existing.items():
            new_last = (unique[key].get("last_user_seen", 0.0), unique[key].get("last_user", -1))
            row = unique[key] = _combine(unique[key], old, bitsets)
            if table is USER_DAY and old["apps"]:
                row["apps"] = " ".join(sorted(set(row["apps"].split()) | set(old["apps"].split())))
            if table is DEV_DAY and (old["last_user_seen"], old["last_user"]) > new_last:
                row["last_user"], row["last_user_seen"] = old["last_user"], old["last_user_seen"]
        _by_keys(conn, table, pk, list(existing), delete(table))
    rows = list(unique.values())
    for start in range(0, len(rows), 1000):
        conn.execute(insert(table), rows[start : start + 1000])


def _by_keys(
    conn: Connection, table: Any, pk: Sequence[str], keys: list[tuple[Any, ...]], statement: Any
) -> list[Any]:
    """Run a SELECT or DELETE of `table` on the rows whose primary key is one of `keys`.

    On PostgreSQL the keys go as one array per key column joined with ``unnest``: a row-value IN
    list of 300 keys took it ~17 ms to plan, which made the store merge of a million-line upload
    three times slower than on SQLite. Elsewhere, row-value IN lists of 300 keys.
    """
    cols = [table.c[c] for c in pk]
    if conn.dialect.name == "postgresql":
        arrays = [
            cast(bindparam(f"key{i}", [k[i] for k in keys]), ARRAY(col.type))
            for i, col in enumerate(cols)
        ]
        wanted = func.unnest(*arrays).table_valued(*pk).render_derived(name="wanted")
        match = and_(*(col == wanted.c[c] for col, c in zip(cols, pk, strict=True)))
        result = conn.execute(statement.where(match))  # a DELETE names `wanted` in USING
        return list(result) if result.returns_rows else []
    out: list[Any] = []
    for start in range(0, len(keys), 300):
        result = conn.execute(statement.where(tuple_(*cols).in_(keys[start : start + 300])))
        if result.returns_rows:
            out.extend(result)
    return out


def _merge_apps(
    conn: Connection,
    rollup: Rollup,
    devices: Mapping[str, int],
    users: Mapping[str, int],
    ips: Mapping[str, int],
    report: int,
    fresh: bool,
) -> None:
    rows = []
    for (day, app_id, domain), a in rollup.apps.items():
        row = {"day": day, "app_id": app_id, "domain": storable(domain), **_usage_values(a.usage)}
        row["devices"] = to_bytes(bits_of(devices[d] for d in a.devices))
        row["users"] = to_bytes(bits_of(users[u] for u in a.users))
        row["ips"] = to_bytes(bits_of(ips[i] for i in a.ips))
        rows.append(row)
    replace_rows(
        conn,
        APP_DAY,
        ("day", "app_id", "domain"),
        rows,
        ("devices", "users", "ips"),
        report,
        fresh=fresh,
    )


def _merge_devices(
    conn: Connection,
    rollup: Rollup,
    devices: Mapping[str, int],
    users: Mapping[str, int],
    ips: Mapping[str, int],
    report: int,
    fresh: bool,
) -> None:
    rows = []
    for (day, device), d in rollup.devices.items():
        row = {"day": day, "device": devices[device], **_usage_values(d.usage)}
        row["users"] = to_bytes(bits_of(users[u] for u in d.users))
        row["ips"] = to_bytes(bits_of(ips[i] for i in d.ips))
        row["last_user"] = users[d.last_user] if d.last_user else -1
        row["last_user_seen"] = d.last_user_seen
        rows.append(row)
    replace_rows(conn, DEV_DAY, ("day", "device"), rows, ("users", "ips"), report, fresh=fresh)


def _merge_spans(
    conn: Connection,
    table: Any,
    pk: tuple[str, str],
    spans: Mapping[tuple[str, str], tuple[float, float]],
) -> None:
    """Upsert (name, name) -> first/last seen rows (user forms, machine sources)."""
    rows = [
        {pk[0]: storable(a)[:256], pk[1]: storable(b)[:256], "first_seen": first, "last_seen": last}
        for (a, b), (first, last) in spans.items()
    ]
    replace_rows(conn, table, pk, rows)


def _merge_device_apps(
    conn: Connection, rollup: Rollup, devices: Mapping[str, int], report: int, fresh: bool
) -> None:
    rows = [
        {"device": devices[device], "day": day, "app_id": app_id, **_usage_values(u)}
        for (device, day, app_id), u in rollup.device_apps.items()
    ]
    replace_rows(conn, DEV_APP, ("device", "day", "app_id"), rows, (), report, fresh=fresh)


def _merge_users(
    conn: Connection,
    rollup: Rollup,
    devices: Mapping[str, int],
    users: Mapping[str, int],
    report: int,
    fresh: bool,
) -> None:
    rows = []
    for (day, user), u in rollup.users.items():
        row = {"day": day, "user": users[user], **_usage_values(u.usage, blocked=False)}
        row["devices"] = to_bytes(bits_of(devices[d] for d in u.devices))
        row["apps"] = " ".join(sorted(u.apps))
        rows.append(row)
    replace_rows(conn, USER_DAY, ("day", "user"), rows, ("devices",), report, fresh=fresh)


def _merge_user_apps(
    conn: Connection, rollup: Rollup, users: Mapping[str, int], report: int, fresh: bool
) -> None:
    rows = [
        {
            "user": users[user], "day": day, "app_id": app_id,
            "bytes_up": _saturated(u.bytes_up), "first_seen": u.first_seen,
            "last_seen": u.last_seen,
        }
        for (user, day, app_id), u in rollup.user_apps.items()
    ]  # fmt: skip
    replace_rows(conn, USER_APP, ("user", "day", "app_id"), rows, (), report, fresh=fresh)


def _merge_hours(conn: Connection, rollup: Rollup, report: int, fresh: bool) -> None:
    rows = []
    for (hour, app_id), u in rollup.hours.items():
        values = _usage_values(u)
        del values["first_seen"], values["last_seen"]
        rows.append({"hour": hour, "app_id": app_id, "report": report, **values})
    if not rows:
        return
    pk = ("hour", "app_id", "report")
    keys = [(r["hour"], r["app_id"], report) for r in rows]
    existing = (
        {}
        if fresh
        else {
            (r.hour, r.app_id, r.report): r._mapping
            for r in _by_keys(conn, HOUR, pk, keys, select(HOUR))
        }
    )
    for r in rows:
        old = existing.get((r["hour"], r["app_id"], report))
        if old is not None:
            for name in _SUMS:
                r[name] = _saturated(r[name] + old[name])
    if existing:
        _by_keys(conn, HOUR, pk, list(existing), delete(HOUR))
    conn.execute(insert(HOUR), rows)
