"""Cloud Discovery storage: merge rollups (one transaction each), and the report queries.

Distinct users, devices and addresses are bitsets of entity ordinals (see `tables_discovery`):
`bits_of`/`names_of` convert, a range query ORs the days' bitsets and counts the bits.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    any_,
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

from enforcer.store.tables.devices import NetworkEventRow
from enforcer.store.tables.discovery import (
    AlertRow,
    AppDailyRow,
    AppHourlyRow,
    DeviceAppDailyRow,
    DeviceDailyRow,
    DiscoveryCursorRow,
    DiscoveryEntityRow,
    UserDailyRow,
)

ENTITY = DiscoveryEntityRow.__table__  # type: ignore[attr-defined]
APP_DAY = AppDailyRow.__table__  # type: ignore[attr-defined]
DEV_DAY = DeviceDailyRow.__table__  # type: ignore[attr-defined]
DEV_APP = DeviceAppDailyRow.__table__  # type: ignore[attr-defined]
USER_DAY = UserDailyRow.__table__  # type: ignore[attr-defined]
HOUR = AppHourlyRow.__table__  # type: ignore[attr-defined]
CURSOR = DiscoveryCursorRow.__table__  # type: ignore[attr-defined]


def to_bytes(bits: int) -> bytes:
    return bits.to_bytes((bits.bit_length() + 7) // 8 or 1, "little")


def from_bytes(data: bytes | None) -> int:
    return int.from_bytes(data or b"", "little")


def bits_of(ordinals: Iterable[int]) -> int:
    bits = 0
    for o in ordinals:
        bits |= 1 << o
    return bits


def ordinals_in(bits: int) -> list[int]:
    out = []
    while bits:
        low = bits & -bits
        out.append(low.bit_length() - 1)
        bits ^= low
    return out


def day_of(when: dt.datetime) -> int:
    return int(when.timestamp() // 86400)


# --- what a batch adds (built by enforcer.discovery.aggregate) ------------------------------


@dataclass
class Usage:
    """Counters of one aggregate."""

    transactions: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    blocked: int = 0
    first_seen: float = float("inf")
    last_seen: float = 0.0

    def add(self, other: Usage) -> None:
        self.transactions += other.transactions
        self.bytes_up += other.bytes_up
        self.bytes_down += other.bytes_down
        self.blocked += other.blocked
        self.first_seen = min(self.first_seen, other.first_seen)
        self.last_seen = max(self.last_seen, other.last_seen)


@dataclass
class AppDay:
    usage: Usage = field(default_factory=Usage)
    devices: set[str] = field(default_factory=set)
    users: set[str] = field(default_factory=set)
    ips: set[str] = field(default_factory=set)


@dataclass
class DeviceDay:
    usage: Usage = field(default_factory=Usage)
    users: set[str] = field(default_factory=set)
    ips: set[str] = field(default_factory=set)


@dataclass
class UserDay:
    usage: Usage = field(default_factory=Usage)
    devices: set[str] = field(default_factory=set)
    apps: set[str] = field(default_factory=set)


@dataclass
class Rollup:
    """What a batch of records adds to each rollup table (keys by name, not yet ordinals)."""

    apps: dict[tuple[int, str, str], AppDay] = field(default_factory=dict)
    """(day, app_id, domain)."""
    devices: dict[tuple[int, str], DeviceDay] = field(default_factory=dict)
    device_apps: dict[tuple[str, int, str], Usage] = field(default_factory=dict)
    """(device, day, app_id) for catalog apps."""
    users: dict[tuple[int, str], UserDay] = field(default_factory=dict)
    hours: dict[tuple[int, str], Usage] = field(default_factory=dict)
    """(hour, app_id) for catalog apps."""


# --- writing -------------------------------------------------------------------------------


def _lock(conn: Connection) -> None:
    """Serialise rollup merges (the cursor table's lock row)."""
    if not conn.execute(
        update(CURSOR)
        .where(CURSOR.c.name == "merge-lock")
        .values(last_event_id=CURSOR.c.last_event_id)
    ).rowcount:
        conn.execute(insert(CURSOR).values(name="merge-lock", last_event_id=0))


def storable(text: str) -> str:
    """Text a log carried, as every back end can store it: PostgreSQL refuses NUL characters."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def entity_ordinals(conn: Connection, kind: str, names: Iterable[str]) -> dict[str, int]:
    """Ordinals of names of a kind, numbering the new ones (inside the caller's transaction)."""
    originals = set(names)
    clean = {name: storable(name) for name in originals}
    by_clean = _entity_ordinals(conn, kind, clean.values())
    return {name: by_clean[clean[name]] for name in originals}


def _entity_ordinals(conn: Connection, kind: str, names: Iterable[str]) -> dict[str, int]:
    wanted = sorted(set(names))
    found: dict[str, int] = {}
    query = select(ENTITY.c.name, ENTITY.c.ordinal).where(ENTITY.c.kind == kind)
    if conn.dialect.name == "postgresql":  # one array parameter (see `_by_keys`)
        names_param = cast(bindparam("names", wanted), ARRAY(ENTITY.c.name.type))
        found.update(
            {n: o for n, o in conn.execute(query.where(ENTITY.c.name == any_(names_param)))}
        )
    else:
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            found.update({n: o for n, o in conn.execute(query.where(ENTITY.c.name.in_(chunk)))})
    new = [n for n in wanted if n not in found]
    if new:
        top = conn.execute(select(func.max(ENTITY.c.ordinal)).where(ENTITY.c.kind == kind)).scalar()
        start_at = -1 if top is None else int(top)
        fresh = {n: start_at + 1 + i for i, n in enumerate(new)}
        conn.execute(
            insert(ENTITY), [{"kind": kind, "name": n, "ordinal": o} for n, o in fresh.items()]
        )
        found.update(fresh)
    return found


def merge_rollup(engine: Engine, rollup: Rollup) -> None:
    """Add a batch's aggregates to the rollup tables, in one transaction."""
    with engine.begin() as conn:
        merge_rollup_in(conn, rollup)


def merge_rollup_in(conn: Connection, rollup: Rollup) -> None:
    """`merge_rollup` inside the caller's transaction (to commit it with other writes)."""
    _lock(conn)
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
    _merge_apps(conn, rollup, devices, users, ips)
    _merge_devices(conn, rollup, devices, users, ips)
    _merge_device_apps(conn, rollup, devices)
    _merge_users(conn, rollup, devices, users)
    _merge_hours(conn, rollup)


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


def _replace(
    conn: Connection,
    table: Any,
    pk: Sequence[str],
    rows: list[dict[str, Any]],
    bitsets: Sequence[str] = (),
) -> None:
    """Upsert by primary key: read the existing rows of these keys, combine, delete, insert."""
    if not rows:
        return
    unique: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:  # names made storable can meet (a NUL and a U+FFFD): one row per key
        key = tuple(row[c] for c in pk)
        unique[key] = _combine(row, unique[key], bitsets) if key in unique else row
    existing = {
        tuple(r._mapping[c] for c in pk): dict(r._mapping)
        for r in _by_keys(conn, table, pk, list(unique), select(table))
    }
    if existing:
        for key, old in existing.items():
            row = unique[key] = _combine(unique[key], old, bitsets)
            if table is USER_DAY and old["apps"]:
                row["apps"] = " ".join(sorted(set(row["apps"].split()) | set(old["apps"].split())))
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
) -> None:
    rows = []
    for (day, app_id, domain), a in rollup.apps.items():
        row = {"day": day, "app_id": app_id, "domain": storable(domain), **_usage_values(a.usage)}
        row["devices"] = to_bytes(bits_of(devices[d] for d in a.devices))
        row["users"] = to_bytes(bits_of(users[u] for u in a.users))
        row["ips"] = to_bytes(bits_of(ips[i] for i in a.ips))
        rows.append(row)
    _replace(conn, APP_DAY, ("day", "app_id", "domain"), rows, ("devices", "users", "ips"))


def _merge_devices(
    conn: Connection,
    rollup: Rollup,
    devices: Mapping[str, int],
    users: Mapping[str, int],
    ips: Mapping[str, int],
) -> None:
    rows = []
    for (day, device), d in rollup.devices.items():
        row = {"day": day, "device": devices[device], **_usage_values(d.usage)}
        row["users"] = to_bytes(bits_of(users[u] for u in d.users))
        row["ips"] = to_bytes(bits_of(ips[i] for i in d.ips))
        rows.append(row)
    _replace(conn, DEV_DAY, ("day", "device"), rows, ("users", "ips"))


def _merge_device_apps(conn: Connection, rollup: Rollup, devices: Mapping[str, int]) -> None:
    rows = [
        {"device": devices[device], "day": day, "app_id": app_id, **_usage_values(u)}
        for (device, day, app_id), u in rollup.device_apps.items()
    ]
    _replace(conn, DEV_APP, ("device", "day", "app_id"), rows)


def _merge_users(
    conn: Connection, rollup: Rollup, devices: Mapping[str, int], users: Mapping[str, int]
) -> None:
    rows = []
    for (day, user), u in rollup.users.items():
        row = {"day": day, "user": users[user], **_usage_values(u.usage, blocked=False)}
        row["devices"] = to_bytes(bits_of(devices[d] for d in u.devices))
        row["apps"] = " ".join(sorted(u.apps))
        rows.append(row)
    _replace(conn, USER_DAY, ("day", "user"), rows, ("devices",))


def _merge_hours(conn: Connection, rollup: Rollup) -> None:
    rows = []
    for (hour, app_id), u in rollup.hours.items():
        values = _usage_values(u)
        del values["first_seen"], values["last_seen"]
        rows.append({"hour": hour, "app_id": app_id, **values})
    if not rows:
        return
    pk = ("hour", "app_id")
    keys = [(r["hour"], r["app_id"]) for r in rows]
    existing = {
        (r.hour, r.app_id): r._mapping for r in _by_keys(conn, HOUR, pk, keys, select(HOUR))
    }
    for r in rows:
        old = existing.get((r["hour"], r["app_id"]))
        if old is not None:
            for name in _SUMS:
                r[name] = _saturated(r[name] + old[name])
    if existing:
        _by_keys(conn, HOUR, pk, list(existing), delete(HOUR))
    conn.execute(insert(HOUR), rows)


# --- reading -------------------------------------------------------------------------------


@dataclass
class Totals:
    transactions: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    blocked: int = 0
    first_seen: float = float("inf")
    last_seen: float = 0.0
    devices: int = 0
    users: int = 0
    ips: int = 0

    @property
    def traffic(self) -> int:
        return self.bytes_up + self.bytes_down


@dataclass
class _Acc:
    totals: Totals = field(default_factory=Totals)
    devices: int = 0
    users: int = 0
    ips: int = 0


def app_usage(
    conn: Connection,
    first_day: int,
    last_day: int,
    *,
    app_ids: Iterable[str] | None = None,
    unrecognised: bool = False,
) -> dict[str, Totals]:
    """Per app (or, with `unrecognised`, per registrable domain): totals and exact distinct counts."""
    query = select(APP_DAY).where(APP_DAY.c.day >= first_day, APP_DAY.c.day <= last_day)
    query = query.where(APP_DAY.c.domain != "" if unrecognised else APP_DAY.c.domain == "")
    if app_ids is not None:
        query = query.where(APP_DAY.c.app_id.in_(list(app_ids)))
    accs: dict[str, _Acc] = {}
    for r in conn.execute(query):
        key = r.domain if unrecognised else r.app_id
        acc = accs.get(key)
        if acc is None:
            acc = accs[key] = _Acc()
        t = acc.totals
        t.transactions += r.transactions
        t.bytes_up += r.bytes_up
        t.bytes_down += r.bytes_down
        t.blocked += r.blocked
        t.first_seen = min(t.first_seen, r.first_seen)
        t.last_seen = max(t.last_seen, r.last_seen)
        acc.devices |= from_bytes(r.devices)
        acc.users |= from_bytes(r.users)
        acc.ips |= from_bytes(r.ips)
    out = {}
    for key, acc in accs.items():
        acc.totals.devices = acc.devices.bit_count()
        acc.totals.users = acc.users.bit_count()
        acc.totals.ips = acc.ips.bit_count()
        out[key] = acc.totals
    return out


def entity_names(
    conn: Connection, kind: str, ordinals: Iterable[int] | None = None
) -> dict[int, str]:
    query = select(ENTITY.c.ordinal, ENTITY.c.name).where(ENTITY.c.kind == kind)
    if ordinals is not None:
        wanted = list(ordinals)
        if not wanted:
            return {}
        query = query.where(ENTITY.c.ordinal.in_(wanted))
    return {o: n for o, n in conn.execute(query)}


def entity_ordinal(conn: Connection, kind: str, name: str) -> int | None:
    value = conn.execute(
        select(ENTITY.c.ordinal).where(ENTITY.c.kind == kind, ENTITY.c.name == name)
    ).scalar()
    return None if value is None else int(value)


def device_usage(
    conn: Connection, first_day: int, last_day: int, *, device: int | None = None
) -> list[dict[str, Any]]:
    """Per device: sums over the range (SQL aggregation; no bitsets needed)."""
    query = (
        select(
            DEV_DAY.c.device,
            func.sum(DEV_DAY.c.transactions).label("transactions"),
            func.sum(DEV_DAY.c.bytes_up).label("bytes_up"),
            func.sum(DEV_DAY.c.bytes_down).label("bytes_down"),
            func.sum(DEV_DAY.c.blocked).label("blocked"),
            func.min(DEV_DAY.c.first_seen).label("first_seen"),
            func.max(DEV_DAY.c.last_seen).label("last_seen"),
        )
        .where(DEV_DAY.c.day >= first_day, DEV_DAY.c.day <= last_day)
        .group_by(DEV_DAY.c.device)
    )
    if device is not None:
        query = query.where(DEV_DAY.c.device == device)
    return [dict(r._mapping) for r in conn.execute(query)]


def device_days(conn: Connection, device: int, first_day: int, last_day: int) -> list[Any]:
    """The device's daily rows (users and addresses per day) in the range, oldest first."""
    query = (
        select(DEV_DAY)
        .where(DEV_DAY.c.device == device, DEV_DAY.c.day >= first_day, DEV_DAY.c.day <= last_day)
        .order_by(DEV_DAY.c.day)
    )
    return list(conn.execute(query))


def device_app_days(
    conn: Connection, first_day: int, last_day: int, *, device: int | None = None
) -> list[Any]:
    """(device, day, app_id, usage) rows in the range."""
    query = select(DEV_APP).where(and_(DEV_APP.c.day >= first_day, DEV_APP.c.day <= last_day))
    if device is not None:
        query = query.where(DEV_APP.c.device == device)
    return list(conn.execute(query))


def user_days(
    conn: Connection, first_day: int, last_day: int, *, user: int | None = None
) -> list[Any]:
    query = select(USER_DAY).where(USER_DAY.c.day >= first_day, USER_DAY.c.day <= last_day)
    if user is not None:
        query = query.where(USER_DAY.c.user == user)
    return list(conn.execute(query))


def app_hours(conn: Connection, first_hour: int, last_hour: int) -> list[Any]:
    query = (
        select(HOUR)
        .where(HOUR.c.hour >= first_hour, HOUR.c.hour <= last_hour)
        .order_by(HOUR.c.hour)
    )
    return list(conn.execute(query))


# --- alerts and the continuous report's cursor ---------------------------------------------

ALERT = AlertRow.__table__  # type: ignore[attr-defined]
EVENT = NetworkEventRow.__table__  # type: ignore[attr-defined]


def read_cursor(conn: Connection, name: str) -> int:
    value = conn.execute(select(CURSOR.c.last_event_id).where(CURSOR.c.name == name)).scalar()
    return int(value) if value is not None else 0


def write_cursor(conn: Connection, name: str, last_event_id: int) -> None:
    if not conn.execute(
        update(CURSOR).where(CURSOR.c.name == name).values(last_event_id=last_event_id)
    ).rowcount:
        conn.execute(insert(CURSOR).values(name=name, last_event_id=last_event_id))


def events_after(conn: Connection, last_id: int, limit: int) -> list[Any]:
    """Network events reported by devices after an event id, oldest first."""
    query = select(EVENT).where(EVENT.c.id > last_id).order_by(EVENT.c.id).limit(limit)
    return list(conn.execute(query))


def insert_alerts(conn: Connection, alerts: Sequence[Mapping[str, Any]]) -> None:
    if alerts:
        conn.execute(insert(ALERT), list(alerts))


def list_alerts(
    conn: Connection,
    *,
    since: dt.datetime | None = None,
    status: str | None = None,
    severity: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
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


def prune_events(engine: Engine, before: dt.datetime) -> int:
    """Delete raw network events older than `before` (already rolled up); returns how many.

    Events the continuous report has not read yet are kept whatever their age, so a daemon
    that was down longer than the retention loses nothing.
    """
    with engine.begin() as conn:
        cursor = read_cursor(conn, "network-events")
        done = conn.execute(
            delete(EVENT).where(EVENT.c.time < before, EVENT.c.id <= cursor)
        ).rowcount
    return int(done or 0)
