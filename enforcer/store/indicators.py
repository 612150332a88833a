"""Policy indicators in the store: read the actual state a plan is made against, apply a plan.

`read_actual` reads the bucket digests and only the policy rows of buckets that differ from the
desired state; `apply_plan` writes a whole plan (rows, change log, digests, app tags) in one
transaction, all or nothing. Rows move through the driver (`store.bulk`): the ORM object path
cannot move a million rows within the targets in benchmarks/README.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, delete, select, update

from enforcer.errors import StalePlanError
from enforcer.gcpause import paused_gc
from enforcer.models import POLICY, Action, Indicator, Severity
from enforcer.plan.digest import BucketDigest, bucket_of, digest_indicators, dirty_buckets
from enforcer.plan.model import ActualState, Change, ChangeAction, Plan
from enforcer.store.audit import record_change
from enforcer.store.bulk import chunks, insert_rows, insert_tuples
from enforcer.store.feed import (
    current_revision,
    lock_revision,
    new_revision,
    set_log_floor,
    write_change_log,
)
from enforcer.store.reviews import write_custom_tags_and_reviews
from enforcer.store.tables.indicators import APP, DIGEST, GROUP, IND, TAG, utcnow

_SIGN = 1 << 63
_WRAP = 1 << 64
_IND_COLUMNS = (
    "value", "type", "action", "severity", "scope", "title", "description", "app_id",
    "generate_alert", "expiration_time",
)  # fmt: skip

FailPoint = Callable[[str], None]
"""Called between the steps of an apply; tests raise from it to prove atomicity."""


def _no_fail(_step: str) -> None:
    return None


def read_digests(conn: Connection) -> dict[int, BucketDigest]:
    """Every bucket's digest (65,536 small rows: read through the driver, without row objects)."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute("SELECT bucket, digest, count FROM bucket_digest")
        rows = cursor.fetchall()
    finally:
        cursor.close()
    return {b: BucketDigest(d % _WRAP, n) for b, d, n in rows}


def read_actual(conn: Connection, desired: Mapping[int, BucketDigest]) -> ActualState:
    """The store's digests, and the policy indicators of every bucket that differs from `desired`."""
    revision = current_revision(conn)
    digests = read_digests(conn)
    dirty = dirty_buckets(desired, digests)
    # A bucket the store has no digest for holds no rows: nothing to read (a first apply reads none).
    stored = sorted(b for b in dirty if b in digests)
    rows = {ind.key: ind for ind in policy_rows(conn, stored)}
    return ActualState(revision=revision, digests=digests, rows=rows, loaded=frozenset(dirty))


_ACTIONS = {a.value: a for a in Action}
_SEVERITIES = {s.value: s for s in Severity}
_SELECT_POLICY_ROWS = f"SELECT {', '.join(_IND_COLUMNS)} FROM indicator WHERE source = 'policy'"


def policy_rows(conn: Connection, buckets: Sequence[int]) -> Iterator[Indicator]:
    """Policy indicators of some buckets, read through the driver (no ORM or Row objects)."""
    if not buckets:
        return
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    actions, severities = _ACTIONS, _SEVERITIES
    try:
        if conn.dialect.name == "postgresql":
            cursor.execute(_SELECT_POLICY_ROWS + " AND bucket = ANY(%s)", (list(buckets),))
            batches: Iterator[Sequence[Any]] = iter([cursor.fetchall()])
        else:
            batches = (
                _sqlite_rows(cursor, buckets[start : start + 5000])
                for start in range(0, len(buckets), 5000)
            )
        for batch in batches:
            for value, typ, action, sev, scope, title, desc, app, alert, exp in batch:
                if exp is not None:
                    exp = _as_utc(exp)
                yield Indicator(
                    value,
                    actions[action],
                    severities[sev],
                    scope,
                    title,
                    desc,
                    app,
                    bool(alert),
                    exp,
                    typ,
                )
    finally:
        cursor.close()


def _sqlite_rows(cursor: Any, buckets: Sequence[int]) -> list[Any]:
    marks = ", ".join("?" for _ in buckets)
    cursor.execute(f"{_SELECT_POLICY_ROWS} AND bucket IN ({marks})", list(buckets))
    rows: list[Any] = cursor.fetchall()
    return rows


def _as_utc(value: Any) -> dt.datetime:
    if isinstance(value, str):  # SQLite keeps timestamps as ISO text
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)  # type: ignore[no-any-return]


def read_app_tags(conn: Connection) -> list[tuple[str, str, str, str]]:
    """(app_id, scope, tag, origin) as last applied."""
    rows = conn.execute(
        select(TAG.c.app_id, TAG.c.scope, TAG.c.tag, TAG.c.origin).order_by(TAG.c.app_id)
    )
    return [tuple(r) for r in rows]


def apply_plan(
    engine: Engine,
    plan: Plan,
    *,
    actor: str = "",
    details: Mapping[str, Any] | None = None,
    fail: FailPoint = _no_fail,
) -> int:
    """Write a whole plan in one transaction; returns the store's revision afterwards.

    Refuses (StalePlanError) a plan made against a revision that has since moved. A plan without
    indicator changes only refreshes the remembered app tags and creates no revision (and no
    audit row); one with changes records ``policy.apply`` by `actor` in the audit log, with
    the revision, its counts and `details` (the policy commit, for the daemon).
    """
    with engine.begin() as conn, paused_gc():
        revision = lock_revision(conn)
        if revision != plan.base_revision:
            raise StalePlanError(plan.base_revision, revision)
        if plan.has_changes:
            counts = plan.counts
            revision = new_revision(
                conn,
                "policy",
                (
                    counts[ChangeAction.CREATE],
                    counts[ChangeAction.UPDATE],
                    counts[ChangeAction.DELETE],
                ),
                actor=actor,
                digest=plan.policy_digest,
            )
            _write_changes(conn, plan.changes, fail)
            fail("changes")
            if plan.base_revision == 0:
                # A first load has nothing to delta against: every device takes a snapshot, so
                # the log starts after it (and a million-row first apply stays fast).
                set_log_floor(conn, revision)
            else:
                write_change_log(conn, revision, POLICY, plan.changes)
            fail("change_log")
            _write_digests(conn, _digests_of_rows(conn, plan))
            fail("digests")
            record_change(
                conn,
                actor=actor,
                action="policy.apply",
                target=f"revision {revision}",
                details={
                    "revision": revision,
                    "created": counts[ChangeAction.CREATE],
                    "updated": counts[ChangeAction.UPDATE],
                    "deleted": counts[ChangeAction.DELETE],
                    "policy_digest": plan.policy_digest[:12],
                    **(details or {}),
                },
            )
        _write_app_state(conn, plan)
        fail("app_state")
    return revision


def row_values(ind: Indicator) -> dict[str, Any]:
    """The indicator columns of a row for `ind`."""
    return {
        "value": ind.value,
        "type": ind.type,
        "action": ind.action.value,
        "severity": ind.severity.value,
        "scope": ind.scope,
        "title": ind.title,
        "description": ind.description,
        "app_id": ind.app_id,
        "generate_alert": ind.generate_alert,
        "expiration_time": ind.expiration,
    }


_CREATE_COLUMNS = (*_IND_COLUMNS, "source", "bucket", "created_by", "created_at", "updated_at")


def _write_changes(conn: Connection, changes: Sequence[Change], fail: FailPoint) -> None:
    now = utcnow()
    creates = [c.after for c in changes if c.action is ChangeAction.CREATE and c.after]
    updates = [c.after for c in changes if c.action is ChangeAction.UPDATE and c.after]
    deletes = [c.key for c in changes if c.action is ChangeAction.DELETE]
    for chunk in chunks(deletes):
        conn.execute(
            delete(IND).where(
                IND.c.source == POLICY,
                IND.c.scope == bindparam("b_scope"),
                IND.c.value == bindparam("b_value"),
            ),
            [{"b_scope": s, "b_value": v} for s, v in chunk],
        )
    fail("deletes")
    for chunk in chunks(updates):
        params = []
        for ind in chunk:
            values = row_values(ind)
            values["b_scope"], values["b_value"] = values.pop("scope"), values.pop("value")
            values["updated_at"] = now
            params.append(values)
        stmt = update(IND).where(
            IND.c.source == POLICY,
            IND.c.scope == bindparam("b_scope"),
            IND.c.value == bindparam("b_value"),
        )
        conn.execute(stmt, params)
    fail("updates")
    for chunk in chunks(creates):
        rows = [
            (
                ind.value,
                ind.type,
                ind.action,
                ind.severity,
                ind.scope,
                ind.title,
                ind.description,
                ind.app_id,
                ind.generate_alert,
                ind.expiration,
                POLICY,
                bucket_of(ind.scope, ind.value),
                POLICY,
                now,
                now,
            )
            for ind in chunk
        ]
        insert_tuples(conn, IND, _CREATE_COLUMNS, rows)
        fail("creates")


def _signed(value: int) -> int:
    return value - _WRAP if value >= _SIGN else value


def _digests_of_rows(conn: Connection, plan: Plan) -> dict[int, BucketDigest]:
    """The digests of the buckets a plan wrote, computed from the rows the store now holds.

    Never taken from the plan: a plan (a saved file, say) that does not say what it writes would
    otherwise leave digests that hide the difference from every later plan. A first load into an
    empty store wrote exactly its creates, so those are hashed without reading them back.
    """
    buckets = set(plan.bucket_digests) | {bucket_of(*c.key) for c in plan.changes}
    if plan.base_revision == 0:
        rows: Iterable[Indicator] = (c.after for c in plan.changes if c.after is not None)
    else:
        rows = policy_rows(conn, sorted(buckets))
    found = digest_indicators(rows).buckets
    return {b: found.get(b, BucketDigest(0, 0)) for b in buckets}


def _write_digests(conn: Connection, digests: Mapping[int, BucketDigest]) -> None:
    buckets = sorted(digests)
    for chunk in chunks(buckets, 500):
        conn.execute(delete(DIGEST).where(DIGEST.c.bucket.in_(chunk)))
    rows = [
        {"bucket": b, "digest": _signed(d.digest), "count": d.size}
        for b, d in sorted(digests.items())
        if d.size
    ]
    insert_rows(conn, DIGEST, rows)


def _write_app_state(conn: Connection, plan: Plan) -> None:
    apps = {(a.app_id, a.name, a.category, round(a.risk, 1)) for a in plan.apps}
    current_apps = {
        tuple(r) for r in conn.execute(select(APP.c.id, APP.c.name, APP.c.category, APP.c.risk))
    }
    if {(a, n, c, round(r, 1)) for a, n, c, r in current_apps} != apps:
        conn.execute(delete(APP))
        insert_rows(
            conn,
            APP,
            [dict(zip(("id", "name", "category", "risk"), a, strict=True)) for a in sorted(apps)],
        )
    tags = {(a.app_id, scope, tag, origin) for a in plan.apps for scope, tag, origin in a.tags}
    if set(read_app_tags(conn)) != tags:
        conn.execute(delete(TAG))
        insert_rows(
            conn,
            TAG,
            [dict(zip(("app_id", "scope", "tag", "origin"), t, strict=True)) for t in sorted(tags)],
        )
    write_custom_tags_and_reviews(conn, plan.apps)
    groups = set(plan.device_groups)
    if {tuple(r) for r in conn.execute(select(GROUP.c.name, GROUP.c.description))} != groups:
        conn.execute(delete(GROUP))
        insert_rows(conn, GROUP, [{"name": n, "description": d} for n, d in sorted(groups)])


def refresh_digests(conn: Connection, buckets: Iterable[int]) -> None:
    """Recompute the digests of some buckets from their rows."""
    wanted = sorted(buckets)
    fresh = digest_indicators(policy_rows(conn, wanted)).buckets
    _write_digests(conn, {b: fresh.get(b, BucketDigest(0, 0)) for b in wanted})
