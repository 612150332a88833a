"""The store's revisions and the change feed devices sync from.

Every write that changes indicators takes the revision lock (`lock_revision`), makes one new
revision (`new_revision`) and logs its changes (`write_change_log`); devices then ask for the
changes after their revision (`changes_since`) and read the current entries of the keys that
changed, or the whole set as a snapshot (`sync_rows_of`, `sync_row_batches`).

A revision number alone does not say which set a device holds: a store restored from a backup
issues the numbers after the backup again, with other changes. So each revision also has an
*epoch* (`epoch_at`): the store's lineage id (a random value in `store_meta`, made with the
first revision and replaced by `renew_epoch`) and a stamp of the revision's own row (its
creation time and what it did). A revision issued again after a restore has another stamp, so
another epoch, and a device holding the old one gets a snapshot.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from enforcer.plan.model import Change, ChangeAction
from enforcer.store.bulk import chunks, insert_tuples
from enforcer.store.tables.indicators import IND, LOG, META, REV, utcnow


def current_revision(conn: Connection) -> int:
    """The store's revision (0 for an empty store)."""
    value = conn.execute(select(META.c.value).where(META.c.key == "revision")).scalar()
    return int(value) if value is not None else 0


def log_floor(conn: Connection) -> int:
    """The oldest revision that delta sync can start from; older cursors need a snapshot."""
    value = conn.execute(select(META.c.value).where(META.c.key == "log_floor")).scalar()
    return int(value) if value is not None else 0


def set_log_floor(conn: Connection, revision: int) -> None:
    """Make `revision` the oldest one delta sync can start from (after a first load)."""
    value = str(revision)
    if not conn.execute(update(META).where(META.c.key == "log_floor").values(value=value)).rowcount:
        conn.execute(insert(META).values(key="log_floor", value=value))


def lock_revision(conn: Connection) -> int:
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


_EPOCH_KEY = "epoch"

NO_EPOCH = "0" * 32
"""The lineage id of a store that has never made a revision (or predates epochs): its first
revision makes a random one, which gives every device one snapshot, as a new store should."""


def store_epoch(conn: Connection) -> str:
    """The store's lineage id: 32 hex digits, `NO_EPOCH` until the first revision."""
    value = conn.execute(select(META.c.value).where(META.c.key == _EPOCH_KEY)).scalar()
    return str(value) if value is not None else NO_EPOCH


def renew_epoch(conn: Connection) -> str:
    """Give the store a new random lineage id (the caller holds `lock_revision`): every
    device's epoch stops matching, so each takes a snapshot at its next sync."""
    value = secrets.token_hex(16)
    if not conn.execute(update(META).where(META.c.key == _EPOCH_KEY).values(value=value)).rowcount:
        conn.execute(insert(META).values(key=_EPOCH_KEY, value=value))
    return value


def epoch_at(conn: Connection, revision: int) -> str | None:
    """The epoch of `revision` in this store (``<lineage id>.<stamp of the revision>``), or
    None when the store has no such revision (then nobody can hold it)."""
    lineage = store_epoch(conn)
    if revision == 0:
        return f"{lineage}.0"
    row = conn.execute(
        select(REV.c.created_at, REV.c.kind, REV.c.created, REV.c.updated, REV.c.deleted,
               REV.c.policy_digest, REV.c.actor).where(REV.c.id == revision)
    ).first()  # fmt: skip
    if row is None:
        return None
    # The creation time alone tells a re-issued revision from the original (microseconds on
    # both back ends); the rest of the row costs nothing and covers a clock set back.
    facts = "|".join(str(value) for value in (revision, *row))
    return f"{lineage}.{hashlib.sha256(facts.encode()).hexdigest()[:16]}"


def current_epoch(conn: Connection) -> tuple[int, str]:
    """The store's revision and its epoch."""
    revision = current_revision(conn)
    epoch = epoch_at(conn, revision)
    # A revision's row is written with it in one transaction; only a revision table emptied by
    # hand lacks it: stamped by the number then, which still differs from any issued epoch.
    return revision, epoch if epoch is not None else f"{store_epoch(conn)}.r{revision}"


def new_revision(
    conn: Connection, kind: str, counts: Sequence[int], *, actor: str, digest: str = ""
) -> int:
    """Make the next revision (the caller holds `lock_revision`) and record what it did."""
    if store_epoch(conn) == NO_EPOCH:
        renew_epoch(conn)
    revision = current_revision(conn) + 1
    conn.execute(update(META).where(META.c.key == "revision").values(value=str(revision)))
    conn.execute(
        insert(REV).values(
            id=revision, created_at=utcnow(), kind=kind, created=counts[0], updated=counts[1],
            deleted=counts[2], policy_digest=digest, actor=actor,
        )
    )  # fmt: skip
    return revision


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


def write_change_log(
    conn: Connection, revision: int, source: str, changes: Sequence[Change]
) -> None:
    """Log a revision's changes for delta sync (one row per key: upsert or remove)."""
    for chunk in chunks(changes):
        rows = []
        for change in chunk:
            ind = change.after or change.before
            assert ind is not None
            op = "remove" if change.action is ChangeAction.DELETE else "upsert"
            rows.append(
                (revision, op, source, ind.scope, ind.value, ind.action, ind.severity, ind.app_id,
                 ind.generate_alert)
            )  # fmt: skip
        insert_tuples(conn, LOG, _LOG_COLUMNS, rows)


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


def count_changes_since(conn: Connection, since: int, scopes: Iterable[str], *, limit: int) -> int:
    """How many change-log rows after revision `since` the scopes have, counted up to `limit`
    (enough to tell a delta from a snapshot without reading the rows)."""
    rows = (
        select(LOG.c.id)
        .where(LOG.c.revision > since, LOG.c.scope.in_(list(scopes)))
        .limit(limit)
        .subquery()
    )
    return int(conn.execute(select(func.count()).select_from(rows)).scalar_one())


# --- what devices receive: the current entries of some keys, or of a whole scope set ---------

SYNC_COLUMNS = (
    IND.c.value,
    IND.c.scope,
    IND.c.action,
    IND.c.severity,
    IND.c.app_id,
    IND.c.generate_alert,
    IND.c.title,
)
"""The columns of a sync entry, in `enforcer.wire.indicators.sync_entry_json`'s argument order."""

_LOOKUP_CHUNK = 500


def sync_rows_of(
    conn: Connection, *, values: Iterable[str], scopes: Sequence[str]
) -> Iterator[Any]:
    """`SYNC_COLUMNS` rows of every source for some values in some scopes (a delta's keys)."""
    wanted = sorted(set(values))
    for start in range(0, len(wanted), _LOOKUP_CHUNK):
        chunk = wanted[start : start + _LOOKUP_CHUNK]
        query = select(*SYNC_COLUMNS).where(IND.c.value.in_(chunk), IND.c.scope.in_(list(scopes)))
        yield from conn.execute(query)


def sync_row_batches(
    conn: Connection, *, scopes: Sequence[str], size: int
) -> Iterator[Sequence[Any]]:
    """Every `SYNC_COLUMNS` row of some scopes in batches of `size`, in (value, scope, source)
    order, from a server-side cursor (a snapshot of a million rows is never held in memory)."""
    query = (
        select(*SYNC_COLUMNS)
        .where(IND.c.scope.in_(list(scopes)))
        .order_by(IND.c.value, IND.c.scope, IND.c.source)
    )
    result = conn.execution_options(stream_results=True, yield_per=size).execute(query)
    yield from result.partitions()


def count_in_scopes(conn: Connection, *, scopes: Sequence[str]) -> int:
    """How many rows (of any source) a device receiving `scopes` gets before merging sources."""
    query = select(func.count()).select_from(IND).where(IND.c.scope.in_(list(scopes)))
    return int(conn.execute(query).scalar_one())
