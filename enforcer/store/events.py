"""Network events uploaded by devices: stored once per (device, batch) however often retried,
taken batch by batch by the continuous report, pruned when rolled up.

A batch and its events are written in one transaction, the batch row first: its unique key
makes a concurrent or retried upload of the same batch fail before any event is written twice.
Events are inserted with SQLAlchemy Core's executemany (no ORM objects: a batch holds thousands).

The same transaction queues the batch in `event_batch_pending`; the report takes queued batches
and deletes their queue rows in the transaction that rolls them up. An id cursor cannot do
this on PostgreSQL: ids are handed out at insert, and a batch that commits after one with
higher ids has been rolled up would be passed for good. A queue row becomes visible exactly
when its batch's events do, whatever the order of ids and commits, so each event is rolled up
once, and pruning keeps the events of every batch still queued.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, delete, exists, func, insert, select
from sqlalchemy.exc import IntegrityError

from enforcer.store.tables.devices import BATCH, EVENT, PENDING
from enforcer.store.tables.indicators import utcnow


class EventRecord(NamedTuple):
    """One event as stored (the device id is the batch's)."""

    time: dt.datetime
    hostname: str
    user: str
    local_ip: str
    domain: str
    dest_ip: str
    dest_port: int
    bytes_up: int
    bytes_down: int
    action: str
    indicator: str
    app_id: str
    source: str
    pid: int = 0
    process_name: str = ""
    process_path: str = ""


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What happened to an uploaded batch: stored now, or stored before (`duplicate`)."""

    batch_id: str
    duplicate: bool
    count: int


def store_batch(
    engine: Engine, *, device_id: str, batch_id: str, events: Sequence[EventRecord]
) -> BatchResult:
    """Store a batch of events once; a batch id seen before for this device stores nothing."""
    try:
        with engine.begin() as conn:
            batch_row = conn.execute(
                insert(BATCH)
                .values(
                    device_id=device_id, batch_id=batch_id, received_at=utcnow(), count=len(events)
                )
                .returning(BATCH.c.id)
            ).scalar_one()
            if events:
                conn.execute(
                    insert(EVENT),
                    [
                        {
                            "device_id": device_id,
                            "domain_rev": reversed_domain(event.domain),
                            "batch_row": batch_row,
                            **event._asdict(),
                        }
                        for event in events
                    ],
                )
                conn.execute(insert(PENDING).values(batch_row=batch_row, count=len(events)))
    except IntegrityError:
        with engine.connect() as conn:
            count = _batch_count(conn, device_id, batch_id)
        if count is None:
            raise
        return BatchResult(batch_id, True, count)
    return BatchResult(batch_id, False, len(events))


def reversed_domain(domain: str) -> str:
    """`domain` with its labels in reverse order (``www.dropbox.com`` -> ``com.dropbox.www``)."""
    return ".".join(reversed(domain.split("."))) if domain else ""


def _batch_count(conn: Connection, device_id: str, batch_id: str) -> int | None:
    query = select(BATCH.c.count).where(
        BATCH.c.device_id == device_id, BATCH.c.batch_id == batch_id
    )
    value = conn.execute(query).scalar()
    return int(value) if value is not None else None


def count_events(conn: Connection, *, device_id: str | None = None) -> int:
    """How many events are stored (for one device, or for all)."""
    query = select(func.count()).select_from(EVENT)
    if device_id is not None:
        query = query.where(EVENT.c.device_id == device_id)
    return int(conn.execute(query).scalar_one())


def warned_per_day(conn: Connection, since: dt.datetime) -> dict[str, int]:
    """Warned and bypassed events per UTC day ('YYYY-MM-DD') from `since` on: every warning a
    user met, whether or not its indicator raises alerts (raw events, so within their
    retention)."""
    day = func.date(EVENT.c.time)
    query = (
        select(day, func.count())
        .where(EVENT.c.time >= since, EVENT.c.action.in_(("warned", "bypassed")))
        .group_by(day)
    )
    return {str(d)[:10]: int(n) for d, n in conn.execute(query)}


def list_events(
    conn: Connection, *, device_id: str | None = None, limit: int = 100
) -> list[EventRecord]:
    """The newest events first (for one device, or for all)."""
    query = select(*[EVENT.c[name] for name in EventRecord._fields])
    if device_id is not None:
        query = query.where(EVENT.c.device_id == device_id)
    rows = conn.execute(query.order_by(EVENT.c.time.desc(), EVENT.c.id.desc()).limit(limit))
    return [EventRecord(*row) for row in rows]


MAX_BATCHES_TAKEN = 2_000
"""The most queued batches one roll-up takes (the length of the id list it reads events by)."""


def take_pending_batches(conn: Connection, *, events: int) -> list[int]:
    """Take the oldest queued batches, whole, up to about `events` events (always at least one
    batch, if any is queued); returns their batch rows.

    They leave the queue in the caller's transaction, which must roll them up before it
    commits. Taking is the transaction's first write: on SQLite it waits for the write lock
    there, rather than failing later to upgrade a read snapshot that writers have moved past;
    on PostgreSQL a concurrent taker waits on the same rows and gets only those still queued.
    """
    head = (
        select(PENDING.c.batch_row, PENDING.c.count)
        .order_by(PENDING.c.batch_row)
        .limit(MAX_BATCHES_TAKEN)
        .subquery()
    )
    before = func.sum(head.c.count).over(order_by=head.c.batch_row) - head.c.count
    running = select(head.c.batch_row, before.label("before")).subquery()
    chosen = select(running.c.batch_row).where(running.c.before < events)
    taken = conn.execute(
        delete(PENDING).where(PENDING.c.batch_row.in_(chosen)).returning(PENDING.c.batch_row)
    )
    return sorted(taken.scalars())


def events_of_batches(conn: Connection, batch_rows: Sequence[int]) -> list[Any]:
    """The events of the given batches, in the order they were stored."""
    if not batch_rows:
        return []
    query = select(EVENT).where(EVENT.c.batch_row.in_(batch_rows)).order_by(EVENT.c.id)
    return list(conn.execute(query))


def prune_events(engine: Engine, before: dt.datetime) -> int:
    """Delete raw network events older than `before` (already rolled up); returns how many.

    Events of a batch still queued for the continuous report are kept whatever their age, so
    a daemon that was down longer than the retention loses nothing.
    """
    queued = exists().where(PENDING.c.batch_row == EVENT.c.batch_row)
    with engine.begin() as conn:
        done = conn.execute(delete(EVENT).where(EVENT.c.time < before, ~queued)).rowcount
    return int(done or 0)


__all__ = [
    "MAX_BATCHES_TAKEN",
    "BatchResult",
    "EventRecord",
    "count_events",
    "events_of_batches",
    "list_events",
    "prune_events",
    "reversed_domain",
    "store_batch",
    "take_pending_batches",
]
