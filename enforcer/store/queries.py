"""Discovery report queries: usage of apps, devices and users over ranges of days or hours.

`enforcer.discovery.reports` (the CLI and API reports) and the console read the rollups only
through these; the per-page reads at the end answer a table page of 50 rows in one query each.

Every read is limited to the named report its connection is scoped to
(`enforcer.store.named_reports.scoped`); unscoped, it reads every report, and rows of the same
key from several reports are combined (sums, first and last seen, bitsets ORed) where a caller
expects one row per key.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection, and_, func, select

from enforcer.store.encoding import from_bytes, to_bytes
from enforcer.store.named_reports import scope_of
from enforcer.store.tables.discovery import (
    APP_DAY,
    DEV_APP,
    DEV_DAY,
    HOUR,
    MACHINE_SOURCE,
    USER_DAY,
    USER_FORM,
)


def _scoped(conn: Connection, query: Any, table: Any) -> Any:
    """`query` limited to the report `conn` is scoped to, if any."""
    report = scope_of(conn)
    return query if report is None else query.where(table.c.report == report)


_SUMMED = ("transactions", "bytes_up", "bytes_down", "blocked")


def _merged(
    conn: Connection, query: Any, table: Any, key: Sequence[str], bitsets: Sequence[str] = ()
) -> list[Any]:
    """The rows of `query` (in its order), one per `key`: every report's rows of a key combined."""
    if scope_of(conn) is not None:
        return list(conn.execute(_scoped(conn, query, table)))
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in conn.execute(query):
        new = dict(row._mapping)
        k = tuple(new[c] for c in key)
        old = out.get(k)
        if old is None:
            out[k] = new
            continue
        for name in _SUMMED:
            if name in old:
                old[name] += new[name]
        if "first_seen" in old:
            old["first_seen"] = min(old["first_seen"], new["first_seen"])
            old["last_seen"] = max(old["last_seen"], new["last_seen"])
        for name in bitsets:
            old[name] = to_bytes(from_bytes(old[name]) | from_bytes(new[name]))
        if "apps" in old:
            old["apps"] = " ".join(sorted(set(old["apps"].split()) | set(new["apps"].split())))
        if "last_user_seen" in old and new["last_user_seen"] > old["last_user_seen"]:
            old["last_user"], old["last_user_seen"] = new["last_user"], new["last_user_seen"]
    return [SimpleNamespace(**row) for row in out.values()]


@dataclass
class Totals:
    """Sums over a range, with exact distinct counts of devices, users and addresses."""

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
    for r in conn.execute(_scoped(conn, query, APP_DAY)):
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
    return [dict(r._mapping) for r in conn.execute(_scoped(conn, query, DEV_DAY))]


def device_days(conn: Connection, device: int, first_day: int, last_day: int) -> list[Any]:
    """The device's daily rows (users and addresses per day) in the range, oldest first."""
    query = (
        select(DEV_DAY)
        .where(DEV_DAY.c.device == device, DEV_DAY.c.day >= first_day, DEV_DAY.c.day <= last_day)
        .order_by(DEV_DAY.c.day)
    )
    return _merged(conn, query, DEV_DAY, ("day", "device"), ("users", "ips"))


def device_app_days(
    conn: Connection, first_day: int, last_day: int, *, device: int | None = None
) -> list[Any]:
    """(device, day, app_id, usage) rows in the range."""
    query = select(DEV_APP).where(and_(DEV_APP.c.day >= first_day, DEV_APP.c.day <= last_day))
    if device is not None:
        query = query.where(DEV_APP.c.device == device)
    return _merged(conn, query, DEV_APP, ("device", "day", "app_id"))


def user_days(
    conn: Connection, first_day: int, last_day: int, *, user: int | None = None
) -> list[Any]:
    query = select(USER_DAY).where(USER_DAY.c.day >= first_day, USER_DAY.c.day <= last_day)
    if user is not None:
        query = query.where(USER_DAY.c.user == user)
    return _merged(conn, query, USER_DAY, ("day", "user"), ("devices",))


def app_hours(conn: Connection, first_hour: int, last_hour: int) -> list[Any]:
    query = (
        select(HOUR)
        .where(HOUR.c.hour >= first_hour, HOUR.c.hour <= last_hour)
        .order_by(HOUR.c.hour)
    )
    return _merged(conn, query, HOUR, ("hour", "app_id"))


# --- per-page reads (the console's tables): one query for a page of devices or users ---------


def device_day_last_users(
    conn: Connection, *, devices: Sequence[int], first_day: int, last_day: int
) -> list[tuple[int, int, float, int]]:
    """(device, last user ordinal, when seen, users bitset) of some devices' days in the range;
    the ordinal is -1 on rows rolled up before migration 0013 (then only the bitset tells)."""
    c = DEV_DAY.c
    query = select(c.device, c.last_user, c.last_user_seen, c.users, c.day).where(
        c.day.in_(list(range(first_day, last_day + 1))), c.device.in_(list(devices))
    )
    return [
        (device, user, seen if user >= 0 else day * 86_400.0, from_bytes(bits))
        for device, user, seen, bits, day in conn.execute(_scoped(conn, query, DEV_DAY))
    ]


def device_app_history(
    conn: Connection, *, devices: Sequence[int], first_day: int, last_day: int
) -> list[Any]:
    """(device, day, app_id, transactions, bytes_up, bytes_down, blocked) rows of some devices."""
    c = DEV_APP.c
    query = select(
        c.device, c.day, c.app_id, c.transactions, c.bytes_up, c.bytes_down, c.blocked
    ).where(c.device.in_(list(devices)), c.day >= first_day, c.day <= last_day)
    return list(conn.execute(_scoped(conn, query, DEV_APP)))


def user_sums(conn: Connection, *, first_day: int, last_day: int) -> list[Any]:
    """(user, transactions, bytes_up, bytes_down, last_seen) of every user over the range."""
    u = USER_DAY.c
    query = (
        select(
            u.user,
            func.sum(u.transactions),
            func.sum(u.bytes_up),
            func.sum(u.bytes_down),
            func.max(u.last_seen),
        )
        .where(u.day >= first_day, u.day <= last_day)
        .group_by(u.user)
    )
    return list(conn.execute(_scoped(conn, query, USER_DAY)))


def user_day_members(
    conn: Connection, *, users: Sequence[int], first_day: int, last_day: int
) -> list[tuple[int, int, str]]:
    """(user, devices bitset, space-separated app ids) of some users' days in the range."""
    u = USER_DAY.c
    query = select(u.user, u.devices, u.apps).where(
        u.day.in_(list(range(first_day, last_day + 1))), u.user.in_(list(users))
    )
    rows = conn.execute(_scoped(conn, query, USER_DAY))
    return [(user, from_bytes(bits), apps) for user, bits, apps in rows]


def distinct_users(conn: Connection, *, first_day: int, last_day: int) -> int:
    """Users seen in the range (OR of the apps' daily user bitsets)."""
    bits = 0
    query = select(APP_DAY.c.users).where(APP_DAY.c.day >= first_day, APP_DAY.c.day <= last_day)
    for (users,) in conn.execute(_scoped(conn, query, APP_DAY)):
        bits |= from_bytes(users)
    return bits.bit_count()


def app_members(conn: Connection, *, app_id: str, first_day: int, last_day: int) -> tuple[int, int]:
    """(devices bitset, users bitset) of who reached a catalog app in the range."""
    query = select(APP_DAY.c.devices, APP_DAY.c.users).where(
        APP_DAY.c.app_id == app_id,
        APP_DAY.c.domain == "",
        APP_DAY.c.day >= first_day,
        APP_DAY.c.day <= last_day,
    )
    devices = users = 0
    for d, u in conn.execute(_scoped(conn, query, APP_DAY)):
        devices |= from_bytes(d)
        users |= from_bytes(u)
    return devices, users


def user_forms(conn: Connection, user: str) -> list[Any]:
    """The raw forms seen of a user's name (form, first_seen, last_seen), by form."""
    c = USER_FORM.c
    query = select(c.form, c.first_seen, c.last_seen).where(c.user == user).order_by(c.form)
    return list(conn.execute(query))


def machine_sources(conn: Connection, machine: str) -> list[Any]:
    """Where a machine's traffic came from (source, first_seen, last_seen), by source."""
    c = MACHINE_SOURCE.c
    query = (
        select(c.source, c.first_seen, c.last_seen).where(c.machine == machine).order_by(c.source)
    )
    return list(conn.execute(query))


def device_day_members(
    conn: Connection, *, first_day: int, last_day: int, devices: Sequence[int] | None = None
) -> list[tuple[int, int, int]]:
    """(device, users bitset, addresses bitset) of the device-days in the range (of some
    devices, or all): a machine's addresses, and the machines of a user or an address."""
    c = DEV_DAY.c
    query = select(c.device, c.users, c.ips).where(c.day >= first_day, c.day <= last_day)
    if devices is not None:
        query = query.where(
            c.day.in_(list(range(first_day, last_day + 1))), c.device.in_(list(devices))
        )
    rows = conn.execute(_scoped(conn, query, DEV_DAY))
    return [(d, from_bytes(u), from_bytes(i)) for d, u, i in rows]
