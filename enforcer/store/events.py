"""Network events uploaded by devices: stored once per (device, batch) however often retried,
read in id order by the continuous report (whose cursor lives here too), pruned when rolled up.

A batch and its events are written in one transaction, the batch row first: its unique key
makes a concurrent or retried upload of the same batch fail before any event is written twice.
Events are inserted with SQLAlchemy Core's executemany (no ORM objects: a batch holds thousands).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from enforcer.store.tables.devices import BATCH, EVENT
from enforcer.store.tables.discovery import CURSOR
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
            conn.execute(
                insert(BATCH).values(
                    device_id=device_id, batch_id=batch_id, received_at=utcnow(), count=len(events)
                )
            )
            if events:
                conn.execute(
                    insert(EVENT),
                    [
                        {
                            "device_id": device_id,
                            "domain_rev": reversed_domain(event.domain),
                            **event._asdict(),
                        }
                        for event in events
                    ],
                )
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


def list_events(
    conn: Connection, *, device_id: str | None = None, limit: int = 100
) -> list[EventRecord]:
    """The newest events first (for one device, or for all)."""
    query = select(*[EVENT.c[name] for name in EventRecord._fields])
    if device_id is not None:
        query = query.where(EVENT.c.device_id == device_id)
    rows = conn.execute(query.order_by(EVENT.c.time.desc(), EVENT.c.id.desc()).limit(limit))
    return [EventRecord(*row) for row in rows]


def events_after(conn: Connection, *, last_id: int, limit: int) -> list[Any]:
    """Network events reported by devices after an event id, oldest first."""
    query = select(EVENT).where(EVENT.c.id > last_id).order_by(EVENT.c.id).limit(limit)
    return list(conn.execute(query))


def read_cursor(conn: Connection, name: str) -> int:
    """The last event id a reader of the events (the continuous report) has processed."""
    value = conn.execute(select(CURSOR.c.last_event_id).where(CURSOR.c.name == name)).scalar()
    return int(value) if value is not None else 0


def write_cursor(conn: Connection, name: str, last_event_id: int) -> None:
    """Move a reader's cursor (inside the transaction that stored what it read)."""
    if not conn.execute(
        update(CURSOR).where(CURSOR.c.name == name).values(last_event_id=last_event_id)
    ).rowcount:
        conn.execute(insert(CURSOR).values(name=name, last_event_id=last_event_id))


ROLLUP_CURSOR = "network-events"
"""The continuous report's cursor: events up to it are rolled up."""


def prune_events(engine: Engine, before: dt.datetime) -> int:
    """Delete raw network events older than `before` (already rolled up); returns how many.

    Events the continuous report has not read yet are kept whatever their age, so a daemon
    that was down longer than the retention loses nothing.
    """
    with engine.begin() as conn:
        cursor = read_cursor(conn, ROLLUP_CURSOR)
        done = conn.execute(
            delete(EVENT).where(EVENT.c.time < before, EVENT.c.id <= cursor)
        ).rowcount
    return int(done or 0)


__all__ = [
    "ROLLUP_CURSOR",
    "BatchResult",
    "EventRecord",
    "count_events",
    "events_after",
    "list_events",
    "prune_events",
    "read_cursor",
    "reversed_domain",
    "store_batch",
    "write_cursor",
]
