"""Expiry: deleting indicators whose expirationTime has passed, as one revision of their own."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, delete, select

from enforcer.models import POLICY
from enforcer.plan.model import Change, ChangeAction
from enforcer.store.bulk import chunks
from enforcer.store.by_name import indicator_of
from enforcer.store.feed import lock_revision, new_revision, write_change_log
from enforcer.store.indicators import refresh_digests
from enforcer.store.tables.indicators import IND


def expire(engine: Engine, now: dt.datetime, *, actor: str = "expiry") -> tuple[int, int]:
    """Delete every indicator whose expirationTime has passed; returns (count, revision)."""
    with engine.begin() as conn:
        revision = lock_revision(conn)
        rows = list(
            conn.execute(
                select(IND).where(IND.c.expiration_time.is_not(None), IND.c.expiration_time <= now)
            )
        )
        if not rows:
            return 0, revision
        revision = new_revision(conn, "expiry", (0, 0, len(rows)), actor=actor)
        changes_by_source: dict[str, list[Change]] = {}
        for row in rows:
            ind = indicator_of(row)
            changes_by_source.setdefault(row.source, []).append(
                Change(ChangeAction.DELETE, ind.key, ind, None)
            )
        ids = [r.id for r in rows]
        for chunk in chunks(ids, 500):
            conn.execute(delete(IND).where(IND.c.id.in_(chunk)))
        for source, changes in changes_by_source.items():
            write_change_log(conn, revision, source, changes)
        refresh_digests(conn, {r.bucket for r in rows if r.source == POLICY})
    return len(rows), revision
