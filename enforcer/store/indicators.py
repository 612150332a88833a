"""Reading the store and applying plans: every write is one transaction, all or nothing.

Bulk paths use SQLAlchemy Core (and COPY on PostgreSQL): the ORM object path cannot move a
million rows within the targets in benchmarks/README.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, DateTime, Engine, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from enforcer.errors import PermanentError, StalePlanError
from enforcer.models import MANUAL, POLICY, Action, Indicator, Severity
from enforcer.gcpause import paused_gc
from enforcer.plan.digest import BucketDigest, bucket_of, digest_indicators, dirty_buckets
from enforcer.plan.model import ActualState, Change, ChangeAction, Plan
from enforcer.store.tables.indicators import (
    AppRow,
    AppTagRow,
    BucketDigestRow,
    ChangeLogRow,
    DeviceGroupRow,
    IndicatorRow,
    RevisionRow,
    StoreMetaRow,
    utcnow,
)

IND = IndicatorRow.__table__  # type: ignore[attr-defined]
LOG = ChangeLogRow.__table__  # type: ignore[attr-defined]
DIGEST = BucketDigestRow.__table__  # type: ignore[attr-defined]
META = StoreMetaRow.__table__  # type: ignore[attr-defined]
REV = RevisionRow.__table__  # type: ignore[attr-defined]
APP = AppRow.__table__  # type: ignore[attr-defined]
TAG = AppTagRow.__table__  # type: ignore[attr-defined]
GROUP = DeviceGroupRow.__table__  # type: ignore[attr-defined]

CHUNK = 20_000
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


@dataclass(frozen=True, slots=True)
class StoredIndicator:
    """An indicator as stored, with its id and source."""

    id: int
    source: str
    indicator: Indicator
    created_by: str
    created_at: dt.datetime
    updated_at: dt.datetime


class UnknownIndicatorError(PermanentError):
    """No indicator with that id (or it is not a manual one)."""


class DuplicateIndicatorError(PermanentError):
    """A manual indicator for that value and scope exists already."""


# --- reading -------------------------------------------------------------------------------


def current_revision(conn: Connection) -> int:
    """The store's revision (0 for an empty store)."""
    value = conn.execute(select(META.c.value).where(META.c.key == "revision")).scalar()
    return int(value) if value is not None else 0


def log_floor(conn: Connection) -> int:
    """The oldest revision that delta sync can start from; older cursors need a snapshot."""
    value = conn.execute(select(META.c.value).where(META.c.key == "log_floor")).scalar()
    return int(value) if value is not None else 0


def _set_meta(conn: Connection, key: str, value: str) -> None:
    if not conn.execute(update(META).where(META.c.key == key).values(value=value)).rowcount:
        conn.execute(insert(META).values(key=key, value=value))


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
    rows = {ind.key: ind for ind in _policy_rows(conn, stored)}
    return ActualState(revision=revision, digests=digests, rows=rows, loaded=frozenset(dirty))


_ACTIONS = {a.value: a for a in Action}
_SEVERITIES = {s.value: s for s in Severity}
_SELECT_POLICY_ROWS = f"SELECT {', '.join(_IND_COLUMNS)} FROM indicator WHERE source = 'policy'"


def _policy_rows(conn: Connection, buckets: Sequence[int]) -> Iterator[Indicator]:
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


def _indicator(row: Any) -> Indicator:
    exp = row.expiration_time
    if exp is not None and exp.tzinfo is None:
        exp = exp.replace(tzinfo=dt.UTC)
    return Indicator(
        value=row.value,
        type=row.type,
        action=Action(row.action),
        severity=Severity(row.severity),
        scope=row.scope,
        title=row.title,
        description=row.description,
        app_id=row.app_id,
        generate_alert=bool(row.generate_alert),
        expiration=exp,
    )


def _stored(row: Any) -> StoredIndicator:
    return StoredIndicator(
        id=row.id,
        source=row.source,
        indicator=_indicator(row),
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def list_indicators(
    conn: Connection,
    *,
    source: str | None = None,
    scope: str | None = None,
    action: Action | None = None,
    app_id: str | None = None,
    contains: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[StoredIndicator]:
    """Stored indicators, filtered and paged, in value order."""
    query = select(IND).order_by(IND.c.value, IND.c.scope, IND.c.source)
    query = query.where(*_filters(source, scope, action, app_id, contains))
    return [_stored(r) for r in conn.execute(query.limit(limit).offset(offset))]


def count_indicators(
    conn: Connection,
    *,
    source: str | None = None,
    scope: str | None = None,
    action: Action | None = None,
    app_id: str | None = None,
    contains: str | None = None,
) -> int:
    query = select(func.count()).select_from(IND)
    query = query.where(*_filters(source, scope, action, app_id, contains))
    return int(conn.execute(query).scalar_one())


def _filters(
    source: str | None,
    scope: str | None,
    action: Action | None,
    app_id: str | None,
    contains: str | None,
) -> list[Any]:
    out: list[Any] = []
    if source is not None:
        out.append(IND.c.source == source)
    if scope is not None:
        out.append(IND.c.scope == scope)
    if action is not None:
        out.append(IND.c.action == action.value)
    if app_id is not None:
        out.append(IND.c.app_id == app_id)
    if contains:
        out.append(IND.c.value.contains(contains.lower(), autoescape=True))
    return out


def iter_indicators(conn: Connection) -> Iterator[StoredIndicator]:
    """Every stored indicator, streamed (exports)."""
    result = conn.execution_options(yield_per=CHUNK).execute(
        select(IND).order_by(IND.c.value, IND.c.scope, IND.c.source)
    )
    for row in result:
        yield _stored(row)


def covering(conn: Connection, domain: str) -> list[StoredIndicator]:
    """Indicators for the domain itself and each of its parents, most specific first."""
    names = [domain]
    while "." in names[-1]:
        names.append(names[-1].split(".", 1)[1])
    rows = [_stored(r) for r in conn.execute(select(IND).where(IND.c.value.in_(names)))]
    return sorted(rows, key=lambda s: (names.index(s.indicator.value), s.source, s.indicator.scope))


def get_indicator(conn: Connection, indicator_id: int) -> StoredIndicator:
    row = conn.execute(select(IND).where(IND.c.id == indicator_id)).first()
    if row is None:
        raise UnknownIndicatorError(f"no indicator with id {indicator_id}")
    return _stored(row)


def read_app_tags(conn: Connection) -> list[tuple[str, str, str, str]]:
    """(app_id, scope, tag, origin) as last applied."""
    rows = conn.execute(
        select(TAG.c.app_id, TAG.c.scope, TAG.c.tag, TAG.c.origin).order_by(TAG.c.app_id)
    )
    return [tuple(r) for r in rows]


def revisions(conn: Connection, limit: int = 20) -> list[RevisionRow]:
    rows = conn.execute(select(REV).order_by(REV.c.id.desc()).limit(limit))
    return [RevisionRow.model_validate(dict(r._mapping)) for r in rows]


# --- writing -------------------------------------------------------------------------------


def _lock_revision(conn: Connection) -> int:
    """Take the store's write lock (the revision row) and return the current revision.

    Writing first makes SQLite take its write lock at once and makes PostgreSQL lock the row,
    so two appliers are serialised and the revision check below cannot race.
    """
    updated = conn.execute(
        update(META).where(META.c.key == "revision").values(value=META.c.value)
    ).rowcount
    if not updated:
        try:
            with conn.begin_nested():
                conn.execute(insert(META).values(key="revision", value="0"))
        except IntegrityError:
            pass
        conn.execute(update(META).where(META.c.key == "revision").values(value=META.c.value))
    return current_revision(conn)


def _new_revision(
    conn: Connection, kind: str, counts: Sequence[int], *, actor: str, digest: str = ""
) -> int:
    revision = current_revision(conn) + 1
    conn.execute(update(META).where(META.c.key == "revision").values(value=str(revision)))
    conn.execute(
        insert(REV).values(
            id=revision, created_at=utcnow(), kind=kind, created=counts[0], updated=counts[1],
            deleted=counts[2], policy_digest=digest, actor=actor,
        )
    )  # fmt: skip
    return revision


def apply_plan(engine: Engine, plan: Plan, *, actor: str = "", fail: FailPoint = _no_fail) -> int:
    """Write a whole plan in one transaction; returns the store's revision afterwards.

    Refuses (StalePlanError) a plan made against a revision that has since moved. A plan without
    indicator changes only refreshes the remembered app tags and creates no revision.
    """
    with engine.begin() as conn, paused_gc():
        revision = _lock_revision(conn)
        if revision != plan.base_revision:
            raise StalePlanError(plan.base_revision, revision)
        if plan.has_changes:
            counts = plan.counts
            revision = _new_revision(
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
                _set_meta(conn, "log_floor", str(revision))
            else:
                _write_change_log(conn, revision, POLICY, plan.changes)
            fail("change_log")
            _write_digests(conn, plan.bucket_digests)
            fail("digests")
        _write_app_state(conn, plan)
        fail("app_state")
    return revision


def _row_values(ind: Indicator) -> dict[str, Any]:
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
_LOG_COLUMNS = (
    "revision",
    "op",
    "source",
    "scope",
    "value",
    "action",
    "severity",
    "app_id",
    "generate_alert",
)


def _write_changes(conn: Connection, changes: Sequence[Change], fail: FailPoint) -> None:
    now = utcnow()
    creates = [c.after for c in changes if c.action is ChangeAction.CREATE and c.after]
    updates = [c.after for c in changes if c.action is ChangeAction.UPDATE and c.after]
    deletes = [c.key for c in changes if c.action is ChangeAction.DELETE]
    for chunk in _chunks(deletes):
        conn.execute(
            delete(IND).where(
                IND.c.source == POLICY,
                IND.c.scope == bindparam("b_scope"),
                IND.c.value == bindparam("b_value"),
            ),
            [{"b_scope": s, "b_value": v} for s, v in chunk],
        )
    fail("deletes")
    for chunk in _chunks(updates):
        params = []
        for ind in chunk:
            values = _row_values(ind)
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
    for chunk in _chunks(creates):
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
        _insert_tuples(conn, IND, _CREATE_COLUMNS, rows)
        fail("creates")


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _bulk_insert(conn: Connection, table: Any, rows: list[dict[str, Any]]) -> None:
    if rows:
        columns = tuple(rows[0])
        _insert_tuples(conn, table, columns, [tuple(r[c] for c in columns) for r in rows])


def _insert_tuples(
    conn: Connection, table: Any, columns: Sequence[str], rows: list[tuple[Any, ...]]
) -> None:
    """Insert many rows through the driver: COPY on PostgreSQL, executemany on SQLite.

    SQLAlchemy's per-row parameter processing costs more than SQLite's insert itself at a
    million rows, so only the columns whose type needs a bind processor (the timestamps) are
    converted, memoised per distinct value (a plan holds a handful of distinct times).
    """
    if not rows:
        return
    raw = conn.connection.driver_connection
    assert raw is not None
    if conn.dialect.name == "postgresql":
        cols = ", ".join(f'"{c}"' for c in columns)
        with raw.cursor() as cur, cur.copy(f'COPY "{table.name}" ({cols}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row(row)
        return
    converters = _converters(conn, table, columns)
    if converters:
        rows = [_convert(row, converters) for row in rows]
    marks = ", ".join("?" for _ in columns)
    cols = ", ".join(f'"{c}"' for c in columns)
    cursor = raw.cursor()
    try:
        cursor.executemany(f'INSERT INTO "{table.name}" ({cols}) VALUES ({marks})', rows)
    finally:
        cursor.close()


def _converters(conn: Connection, table: Any, columns: Sequence[str]) -> list[tuple[int, Any]]:
    out = []
    for index, name in enumerate(columns):
        processor = table.c[name].type.bind_processor(conn.dialect)
        if processor is not None and _is_datetime(table.c[name].type):
            out.append((index, _memoised(processor)))
    return out


def _is_datetime(column_type: Any) -> bool:
    return isinstance(column_type, DateTime) or isinstance(
        getattr(column_type, "impl", None), DateTime
    )


def _memoised(processor: Callable[[Any], Any]) -> Callable[[Any], Any]:
    memo: dict[Any, Any] = {}

    def convert(value: Any) -> Any:
        if value is None:
            return None
        done = memo.get(value)
        if done is None:
            done = processor(value)
            if isinstance(done, dt.datetime):
                done = done.isoformat(" ")  # what sqlite3's own datetime adapter stores
            memo[value] = done
        return done

    return convert


def _convert(row: tuple[Any, ...], converters: list[tuple[int, Any]]) -> tuple[Any, ...]:
    values = list(row)
    for index, convert in converters:
        values[index] = convert(values[index])
    return tuple(values)


def _write_change_log(
    conn: Connection, revision: int, source: str, changes: Sequence[Change]
) -> None:
    for chunk in _chunks(changes):
        rows = []
        for change in chunk:
            ind = change.after or change.before
            assert ind is not None
            op = "remove" if change.action is ChangeAction.DELETE else "upsert"
            rows.append(
                (revision, op, source, ind.scope, ind.value, ind.action, ind.severity, ind.app_id,
                 ind.generate_alert)
            )  # fmt: skip
        _insert_tuples(conn, LOG, _LOG_COLUMNS, rows)


def _signed(value: int) -> int:
    return value - _WRAP if value >= _SIGN else value


def _write_digests(conn: Connection, digests: Mapping[int, BucketDigest]) -> None:
    buckets = sorted(digests)
    for chunk in _chunks(buckets, 500):
        conn.execute(delete(DIGEST).where(DIGEST.c.bucket.in_(chunk)))
    rows = [
        {"bucket": b, "digest": _signed(d.digest), "count": d.size}
        for b, d in sorted(digests.items())
        if d.size
    ]
    _bulk_insert(conn, DIGEST, rows)


def _write_app_state(conn: Connection, plan: Plan) -> None:
    apps = {(a.app_id, a.name, a.category, round(a.risk, 1)) for a in plan.apps}
    current_apps = {
        tuple(r) for r in conn.execute(select(APP.c.id, APP.c.name, APP.c.category, APP.c.risk))
    }
    if {(a, n, c, round(r, 1)) for a, n, c, r in current_apps} != apps:
        conn.execute(delete(APP))
        _bulk_insert(
            conn,
            APP,
            [dict(zip(("id", "name", "category", "risk"), a, strict=True)) for a in sorted(apps)],
        )
    tags = {(a.app_id, scope, tag, origin) for a in plan.apps for scope, tag, origin in a.tags}
    if set(read_app_tags(conn)) != tags:
        conn.execute(delete(TAG))
        _bulk_insert(
            conn,
            TAG,
            [dict(zip(("app_id", "scope", "tag", "origin"), t, strict=True)) for t in sorted(tags)],
        )
    groups = set(plan.device_groups)
    if {tuple(r) for r in conn.execute(select(GROUP.c.name, GROUP.c.description))} != groups:
        conn.execute(delete(GROUP))
        _bulk_insert(conn, GROUP, [{"name": n, "description": d} for n, d in sorted(groups)])


def add_manual(engine: Engine, indicator: Indicator, *, actor: str) -> tuple[int, int]:
    """Create a manual indicator; returns (id, revision). Reconciliation never touches it."""
    with engine.begin() as conn:
        _lock_revision(conn)
        exists = conn.execute(
            select(IND.c.id).where(
                IND.c.source == MANUAL,
                IND.c.scope == indicator.scope,
                IND.c.value == indicator.value,
            )
        ).first()
        if exists:
            raise DuplicateIndicatorError(
                f"a manual indicator for {indicator.value!r} in scope {indicator.scope or 'all'!r} "
                f"exists already (id {exists[0]})"
            )
        revision = _new_revision(conn, MANUAL, (1, 0, 0), actor=actor)
        now = utcnow()
        values = _row_values(indicator)
        values.update(source=MANUAL, bucket=-1, created_by=actor, created_at=now, updated_at=now)
        new_id = conn.execute(insert(IND).values(**values).returning(IND.c.id)).scalar_one()
        change = Change(ChangeAction.CREATE, indicator.key, None, indicator)
        _write_change_log(conn, revision, MANUAL, [change])
    return int(new_id), revision


def delete_manual(engine: Engine, indicator_id: int, *, actor: str) -> int:
    """Delete a manual indicator by id; returns the new revision."""
    with engine.begin() as conn:
        _lock_revision(conn)
        row = conn.execute(
            select(IND).where(IND.c.id == indicator_id, IND.c.source == MANUAL)
        ).first()
        if row is None:
            raise UnknownIndicatorError(f"no manual indicator with id {indicator_id}")
        revision = _new_revision(conn, MANUAL, (0, 0, 1), actor=actor)
        conn.execute(delete(IND).where(IND.c.id == indicator_id))
        ind = _indicator(row)
        _write_change_log(conn, revision, MANUAL, [Change(ChangeAction.DELETE, ind.key, ind, None)])
    return revision


def expire(engine: Engine, now: dt.datetime, *, actor: str = "expiry") -> tuple[int, int]:
    """Delete every indicator whose expirationTime has passed; returns (count, revision)."""
    with engine.begin() as conn:
        revision = _lock_revision(conn)
        rows = list(
            conn.execute(
                select(IND).where(IND.c.expiration_time.is_not(None), IND.c.expiration_time <= now)
            )
        )
        if not rows:
            return 0, revision
        revision = _new_revision(conn, "expiry", (0, 0, len(rows)), actor=actor)
        changes_by_source: dict[str, list[Change]] = {}
        for row in rows:
            ind = _indicator(row)
            changes_by_source.setdefault(row.source, []).append(
                Change(ChangeAction.DELETE, ind.key, ind, None)
            )
        ids = [r.id for r in rows]
        for chunk in _chunks(ids, 500):
            conn.execute(delete(IND).where(IND.c.id.in_(chunk)))
        for source, changes in changes_by_source.items():
            _write_change_log(conn, revision, source, changes)
        _refresh_digests(conn, {r.bucket for r in rows if r.source == POLICY})
    return len(rows), revision


def _refresh_digests(conn: Connection, buckets: Iterable[int]) -> None:
    """Recompute the digests of some buckets from their rows."""
    wanted = sorted(buckets)
    fresh = digest_indicators(_policy_rows(conn, wanted)).buckets
    _write_digests(conn, {b: fresh.get(b, BucketDigest(0, 0)) for b in wanted})


def changes_since(
    conn: Connection, since: int, scopes: Iterable[str], *, limit: int | None = None
) -> list[dict[str, Any]]:
    """Change-log rows after revision `since` for the given scopes, oldest first."""
    query = (
        select(LOG.c.revision, LOG.c.op, LOG.c.source, LOG.c.scope, LOG.c.value, LOG.c.action,
               LOG.c.severity, LOG.c.app_id, LOG.c.generate_alert)
        .where(LOG.c.revision > since, LOG.c.scope.in_(list(scopes)))
        .order_by(LOG.c.id)
    )  # fmt: skip
    if limit is not None:
        query = query.limit(limit)
    return [dict(r._mapping) for r in conn.execute(query)]


__all__ = [
    "DuplicateIndicatorError",
    "StoredIndicator",
    "UnknownIndicatorError",
    "add_manual",
    "apply_plan",
    "changes_since",
    "count_indicators",
    "covering",
    "current_revision",
    "delete_manual",
    "expire",
    "get_indicator",
    "iter_indicators",
    "list_indicators",
    "log_floor",
    "read_actual",
    "read_app_tags",
    "read_digests",
    "revisions",
]
