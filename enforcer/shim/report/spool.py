"""The event spool: network events on disk until the server has acknowledged them.

Why on disk: events are the evidence discovery and alerts are built from, and the moments a
server is unreachable (a laptop off the network, a server upgrade) are exactly when a device
must not forget what it saw. The spool is a SQLite file in the state directory (WAL mode, so an
append is one sequential write and a reader never waits for it).

Delivery is at-least-once from here and exactly-once on the server, through stable batch ids:

1. `append` stores events, unassigned to any batch;
2. `cut` assigns the oldest unassigned events (at most ``max_batch``) to a new batch id (a
   uuid4) *in the file*, and returns it; as long as a batch is unacknowledged, `cut` returns that
   same batch again, with the same id and the same events -- after a timeout, or after a crash
   and restart;
3. `ack` deletes a batch's events once the server answered 200. The server stores a batch id
   once, so a batch sent twice (the 200 was lost) is counted once.

Bound and drop policy: the spool holds at most ``max_events`` events (default 1,000,000, a few
hundred MB). When an append would exceed it, the *oldest* events are dropped first (recent
events are worth more to an admin investigating what happens now), unassigned ones before
those already cut into a batch, so that a batch in flight keeps its content. Dropped events are
counted in ``dropped`` and each time the bound is reached ``bound_reached`` grows; both persist
in the file and the reporter sends them with every batch and logs them.

Not thread-safe: the reporter calls it from a single worker thread.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_MAX_EVENTS = 1_000_000
DEFAULT_BATCH = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    first_id INTEGER NOT NULL,
    last_id INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
# A batch is a range of event ids (batches are cut from the oldest events, one at a time), so
# events need no batch column and no second index: appends touch one B-tree only.


@dataclass(frozen=True, slots=True)
class Batch:
    """A cut batch: its stable id and its events (the wire dictionaries)."""

    batch_id: str
    events: list[dict[str, Any]]


class Spool:
    """Events waiting for the server, in a SQLite file."""

    def __init__(
        self,
        path: Path,
        *,
        max_events: int = DEFAULT_MAX_EVENTS,
        max_batch: int = DEFAULT_BATCH,
    ) -> None:
        if max_events < 1 or max_batch < 1:
            raise ValueError("max_events and max_batch must be positive")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_events = max_events
        self.max_batch = max_batch
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._size = int(self._db.execute("SELECT count(*) FROM events").fetchone()[0])
        # Kept in memory too, so that reading them (stats, headers) never touches the file.
        self._dropped = self._counter("dropped")
        self._bound_reached = self._counter("bound_reached")

    def close(self) -> None:
        """Close the file (everything appended is already committed)."""
        self._db.close()

    def __len__(self) -> int:
        return self._size

    def _counter(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    @property
    def dropped(self) -> int:
        """Events dropped because the spool was full, since the file was created."""
        return self._dropped

    @property
    def bound_reached(self) -> int:
        """How many appends found the spool full."""
        return self._bound_reached

    @property
    def stats(self) -> dict[str, int]:
        """pending, dropped and bound_reached, for logs and reports."""
        return {
            "pending": self._size,
            "dropped": self.dropped,
            "bound_reached": self.bound_reached,
        }

    def append(self, events: Sequence[dict[str, Any]]) -> int:
        """Store events (one transaction); returns how many old ones were dropped to fit."""
        if not events:
            return 0
        db = self._db
        rows = events[-self.max_events :]
        db.execute("BEGIN IMMEDIATE")
        try:
            excess = self._size + len(rows) - self.max_events
            evicted = self._drop_oldest(excess) if excess > 0 else 0
            db.executemany(
                "INSERT INTO events (body) VALUES (?)",
                ((json.dumps(e, separators=(",", ":")),) for e in rows),
            )
            dropped = evicted + len(events) - len(rows)
            if dropped:
                self._bump("dropped", dropped)
                self._bump("bound_reached", 1)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        self._size += len(rows) - evicted
        if dropped:
            self._dropped += dropped
            self._bound_reached += 1
        return dropped

    def _drop_oldest(self, count: int) -> int:
        db = self._db
        removed = db.execute(
            "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE id > "
            "(SELECT coalesce(max(last_id), 0) FROM batches) ORDER BY id LIMIT ?)",
            (count,),
        ).rowcount
        if removed < count:
            removed += db.execute(
                "DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id LIMIT ?)",
                (count - removed,),
            ).rowcount
        return int(removed)

    def _bump(self, name: str, by: int) -> None:
        self._db.execute(
            "INSERT INTO counters VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, by),
        )

    def cut(self) -> Batch | None:
        """The oldest unacknowledged batch, or a new one from the oldest events; None if empty."""
        db = self._db
        row = db.execute(
            "SELECT batch_id, first_id, last_id FROM batches ORDER BY first_id LIMIT 1"
        ).fetchone()
        if row is None:
            ids = db.execute(
                "SELECT min(id), max(id) FROM (SELECT id FROM events ORDER BY id LIMIT ?)",
                (self.max_batch,),
            ).fetchone()
            if ids[0] is None:
                return None
            row = (str(uuid.uuid4()), ids[0], ids[1])
            db.execute("INSERT INTO batches VALUES (?, ?, ?)", row)
        batch_id, first, last = row
        bodies = db.execute(
            "SELECT body FROM events WHERE id BETWEEN ? AND ? ORDER BY id", (first, last)
        ).fetchall()
        return Batch(str(batch_id), [json.loads(body) for (body,) in bodies])

    def ack(self, batch_id: str) -> int:
        """Forget a batch the server accepted; returns how many events it held."""
        db = self._db
        row = db.execute(
            "SELECT first_id, last_id FROM batches WHERE batch_id = ?", (batch_id,)
        ).fetchone()
        if row is None:
            return 0
        db.execute("BEGIN IMMEDIATE")
        try:
            removed = int(db.execute("DELETE FROM events WHERE id BETWEEN ? AND ?", row).rowcount)
            db.execute("DELETE FROM batches WHERE batch_id = ?", (batch_id,))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        self._size -= removed
        return removed
