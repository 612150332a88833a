"""Re-keying rolled-up data by the user names of today's rules (`enforcer discovery refold`).

Users are named when a batch is rolled up (`enforcer.discovery.identity`): data rolled up before
those rules existed, or before a mapping file changed, is kept under the names of its time
(``CONTOSO\\alice`` and ``alice`` as two users). `refold_users` takes a `fold` function (raw
name -> the user of today's rules) and moves each user's rows to the user it folds to:

- the users' daily rows (``discovery_user_daily``) are re-keyed and combined with the rows the
  target user already has (counts summed, devices ORed, apps joined), and so are their daily
  uploads per app (``discovery_user_app_daily``, bytes summed);
- the bitsets of users in the apps' and machines' daily rows, and each machine-day's last user,
  name the target user's ordinal instead;
- the raw forms listed on user pages follow (a name rolled up before forms were kept becomes a
  form of its user, with the period its rows cover);
- alerts name the target user, with the raw form in their details.

Each table is changed in one transaction, under the roll-up merge lock, so a roll-up running
meanwhile never sees a table half re-keyed. Run again, it finds nothing left to change (the old
names keep their entity rows, unused, so ordinals are never reused).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, and_, delete, select, update

from enforcer.store.encoding import from_bytes, ordinals_in, to_bytes
from enforcer.store.entities import entity_ordinals
from enforcer.store.rollups import lock_merges, replace_rows
from enforcer.store.tables.discovery import (
    ALERT,
    APP_DAY,
    DEV_DAY,
    ENTITY,
    USER_APP,
    USER_DAY,
    USER_FORM,
)

Fold = Callable[[str], str]


@dataclass
class RefoldStats:
    """What a refold changed: the names folded into another user, and rows changed per table."""

    folded: dict[str, str] = field(default_factory=dict)
    """Raw name -> its user, for each name in use that folds to another."""
    rows: dict[str, int] = field(default_factory=dict)
    """Table name -> rows changed."""


def refold_users(engine: Engine, fold: Fold) -> RefoldStats:
    """Move the rows of every user name that `fold` maps to another user onto that user."""
    stats = RefoldStats()
    with engine.begin() as conn:
        lock_merges(conn)
        query = select(ENTITY.c.name, ENTITY.c.ordinal).where(ENTITY.c.kind == "user")
        names: dict[str, int] = {name: ordinal for name, ordinal in conn.execute(query)}
        moved = {name: fold(name) for name in names if name and fold(name) != name}
        targets = entity_ordinals(conn, "user", set(moved.values()))
        remap = {names[name]: targets[user] for name, user in moved.items()}
        in_use = set(
            conn.scalars(select(USER_DAY.c.user).where(USER_DAY.c.user.in_(list(remap))).distinct())
        )
    if not remap:
        return stats
    stats.folded = {name: moved[name] for name in sorted(moved) if names[name] in in_use}
    stats.rows["discovery_user_form"] = _in_one(engine, lambda c: _forms(c, moved, names, fold))
    stats.rows["discovery_user_daily"] = _in_one(engine, lambda c: _user_days(c, remap))
    stats.rows["discovery_user_app_daily"] = _in_one(engine, lambda c: _user_apps(c, remap))
    stats.rows["discovery_app_daily"] = _in_one(engine, lambda c: _bitsets(c, APP_DAY, remap))
    stats.rows["discovery_device_daily"] = _in_one(engine, lambda c: _bitsets(c, DEV_DAY, remap))
    stats.rows["alert"] = _in_one(engine, lambda c: _alerts(c, fold))
    return stats


def _in_one(engine: Engine, change: Callable[[Connection], int]) -> int:
    """Run one table's change in its own transaction, under the merge lock."""
    with engine.begin() as conn:
        lock_merges(conn)
        return change(conn)


def _forms(conn: Connection, moved: Mapping[str, str], names: Mapping[str, int], fold: Fold) -> int:
    """Forms listed under the user they fold to now; each folded name a form of its user
    (spanning its daily rows' period) when it has rows not yet re-keyed."""
    changed = 0
    rows = [dict(r._mapping) for r in conn.execute(select(USER_FORM))]
    spans: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        user = fold(row["form"])
        if user != row["user"]:
            changed += 1
        key = (user, row["form"])
        spans[key] = _widen(spans.get(key), {**row, "user": user})
    ordinals = {names[n]: n for n in moved}
    periods = select(USER_DAY.c.user, USER_DAY.c.first_seen, USER_DAY.c.last_seen).where(
        USER_DAY.c.user.in_(list(ordinals))
    )
    for ordinal, first, last in conn.execute(periods):
        raw = ordinals[ordinal]
        key = (moved[raw], raw)
        if key not in spans:
            changed += 1
        spans[key] = _widen(
            spans.get(key), {"user": key[0], "form": raw, "first_seen": first, "last_seen": last}
        )
    if changed:
        conn.execute(delete(USER_FORM))
        if spans:
            conn.execute(USER_FORM.insert(), list(spans.values()))
    return changed


def _widen(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    if old is None:
        return new
    old["first_seen"] = min(old["first_seen"], new["first_seen"])
    old["last_seen"] = max(old["last_seen"], new["last_seen"])
    return old


def _user_days(conn: Connection, remap: Mapping[int, int]) -> int:
    """The folded names' daily rows, moved onto their users' (combined with theirs)."""
    query = select(USER_DAY).where(USER_DAY.c.user.in_(list(remap)))
    rows = [dict(r._mapping) for r in conn.execute(query)]
    if not rows:
        return 0
    conn.execute(delete(USER_DAY).where(USER_DAY.c.user.in_(list(remap))))
    for row in rows:
        row["user"] = remap[row["user"]]
    replace_rows(conn, USER_DAY, ("day", "user", "report"), rows, ("devices",))
    return len(rows)


def _user_apps(conn: Connection, remap: Mapping[int, int]) -> int:
    """The folded names' daily uploads per app, moved onto their users' (summed with theirs)."""
    query = select(USER_APP).where(USER_APP.c.user.in_(list(remap)))
    rows = [dict(r._mapping) for r in conn.execute(query)]
    if not rows:
        return 0
    conn.execute(delete(USER_APP).where(USER_APP.c.user.in_(list(remap))))
    for row in rows:
        row["user"] = remap[row["user"]]
    replace_rows(conn, USER_APP, ("user", "day", "app_id", "report"), rows)
    return len(rows)


def _bitsets(conn: Connection, table: Any, remap: Mapping[int, int]) -> int:
    """The users bitset of each row naming a folded name, and (machine-days) its last user."""
    moved_bits = sum(1 << o for o in remap)
    pk = [c.name for c in table.primary_key.columns]
    has_last = "last_user" in table.c
    columns = [table.c[c] for c in pk] + [table.c.users]
    if has_last:
        columns.append(table.c.last_user)
    changed = 0
    for row in conn.execute(select(*columns)).mappings().all():
        bits = from_bytes(row["users"])
        values: dict[str, Any] = {}
        if bits & moved_bits:
            for o in ordinals_in(bits & moved_bits):
                bits = (bits & ~(1 << o)) | (1 << remap[o])
            values["users"] = to_bytes(bits)
        if has_last and row["last_user"] in remap:
            values["last_user"] = remap[row["last_user"]]
        if values:
            where = and_(*(table.c[c] == row[c] for c in pk))
            conn.execute(update(table).where(where).values(**values))
            changed += 1
    return changed


def _alerts(conn: Connection, fold: Fold) -> int:
    """Alerts that name a user by a name that folds to another: the user, the raw form kept
    in the details."""
    changed = 0
    query = select(ALERT.c.id, ALERT.c.user, ALERT.c.details).where(ALERT.c.user != "")
    for alert_id, raw, details in conn.execute(query).all():
        user = fold(raw)
        if user == raw:
            continue
        seen = f"user seen as {raw}"
        note = details if seen in details else (f"{details}; {seen}" if details else seen)
        conn.execute(
            update(ALERT).where(ALERT.c.id == alert_id).values(user=user, details=note[:1024])
        )
        changed += 1
    return changed
