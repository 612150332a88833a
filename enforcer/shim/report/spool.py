"""The event spool: network events on disk until the server has acknowledged them.

Why on disk: events are the evidence discovery and alerts are built from, and the moments a
server is unreachable (a laptop off the network, a server upgrade) are exactly when a device
must not forget what it saw. The spool is a SQLite file in the state directory (WAL mode, so an
append is one sequential write and a reader never waits for it).

Delivery is at-least-once from here and exactly-once on the server, through stable batch ids:

1. `append` stores events and, in the same transaction, puts them in batches: it extends the
   newest batch while that holds fewer than ``max_batch`` events and has not been handed out,
   else starts a new one (a uuid4). A batch is a range of event ids;
2. `cut` hands out the oldest unacknowledged batch. It only *reads* the file: a batch's id and
   range were written when its events were, so a full disk never stops the sending of what is
   already spooled. Once handed out a batch is never extended again (in memory while the process
   lives; at start every batch in the file counts as handed out), so a batch sent twice -- after
   a timeout, or after a crash and restart -- has the same id and the same events;
3. `ack` deletes a batch's events once the server answered 200. The server stores a batch id
   once, so a batch sent twice (the 200 was lost) is counted once. When the disk refuses the
   delete, the acknowledgement is kept in memory (the batch is not handed out again) and the
   delete is retried by the next write.

Bound and drop policy: the spool holds at most ``max_events`` events (default 1,000,000, a few
hundred MB). When an append would exceed it, the *oldest* events are dropped first (recent
events are worth more to an admin investigating what happens now), sparing the batch in
flight, so that it keeps its content. Dropped events are counted in ``dropped`` and each time
the bound is reached ``bound_reached`` grows; both persist in the file and the reporter sends
them with every batch and logs them.

``journal_seq`` (persisted with each append) is the sequence number of the last event of the
reporter's write-ahead journal that the spool holds: see `enforcer.shim.report.journal`.

Not thread-safe: the reporter calls it from a single worker thread.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

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
# A batch is a range of event ids (events get increasing ids and batches are consecutive
# ranges), so events need no batch column and no second index: appends touch one B-tree only.

_OLDEST_BATCHES = (
    "SELECT batch_id, first_id, last_id FROM batches b WHERE EXISTS "
    "(SELECT 1 FROM events WHERE id BETWEEN b.first_id AND b.last_id) ORDER BY first_id"
)

Body = dict[str, Any] | str
"""An event's wire form: a dictionary, or the same already serialised as compact JSON."""


@dataclass(frozen=True, slots=True)
class Batch:
    """A cut batch: its stable id and its events (the wire dictionaries)."""

    batch_id: str
    events: list[dict[str, Any]]


class Spool:
    """Events waiting for the server, in a SQLite file (or in memory: `Spool.in_memory`)."""

    def __init__(
        self,
        path: Path,
        *,
        max_events: int = DEFAULT_MAX_EVENTS,
        max_batch: int = DEFAULT_BATCH,
    ) -> None:
        if max_events < 1 or max_batch < 1:
            raise ValueError("max_events and max_batch must be positive")
        self.path = path
        self.max_events = max_events
        self.max_batch = max_batch
        self.volatile = str(path) == ":memory:"
        """True when the events live in memory only (the state directory took no file)."""
        if not self.volatile:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        if not self.volatile:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._read_counts()
        self._open: str | None = None
        """The batch appends may still extend: started by this process, not yet handed out."""
        self._in_flight: tuple[str, int, int] | None = None
        self._acked: dict[str, tuple[int, int, int]] = {}
        """Acknowledged batches whose delete the disk refused: id -> (first, last, events)."""

    def _read_counts(self) -> None:
        self._size = int(self._db.execute("SELECT count(*) FROM events").fetchone()[0])
        # Kept in memory too, so that reading them (stats, headers) never touches the file.
        self._dropped = self._counter("dropped")
        self._bound_reached = self._counter("bound_reached")
        self.journal_seq = self._counter("journal_seq")
        """The last journal sequence number whose event is in the spool (0: none)."""

    @classmethod
    def in_memory(
        cls, *, max_events: int = DEFAULT_MAX_EVENTS, source: Path | None = None
    ) -> Spool:
        """A spool that keeps its events in memory only (for a read-only state directory),
        starting with a copy of what the spool file `source` holds, if it can be read (those
        events are sent again after every restart; the server counts each batch id once)."""
        spool = cls(Path(":memory:"), max_events=max_events)
        if source is not None and source.exists():
            try:
                uri = f"file:{quote(str(source.resolve()))}?immutable=1"
                with contextlib.closing(sqlite3.connect(uri, uri=True)) as stored:
                    stored.backup(spool._db)
            except sqlite3.Error:
                spool._db.executescript(_SCHEMA)
            spool._read_counts()
        return spool

    def close(self) -> None:
        """Close the file (everything appended is already committed)."""
        self._db.close()

    def __len__(self) -> int:
        return self._size - sum(n for _, _, n in self._acked.values())

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
            "pending": len(self),
            "dropped": self.dropped,
            "bound_reached": self.bound_reached,
        }

    def append(self, events: Sequence[Body], *, journal_seq: int | None = None) -> int:
        """Store events in batches (one transaction); returns how many old ones were dropped
        to fit. `journal_seq`: the journal sequence number of the last of them."""
        if not events:
            return 0
        db = self._db
        rows = events[-self.max_events :]
        db.execute("BEGIN IMMEDIATE")
        try:
            deleted = self._delete_acked()
            excess = self._size - deleted + len(rows) - self.max_events
            evicted = self._drop_oldest(excess) if excess > 0 else 0
            db.executemany(
                "INSERT INTO events (body) VALUES (?)",
                (
                    (b if isinstance(b, str) else json.dumps(b, separators=(",", ":")),)
                    for b in rows
                ),
            )
            self._assign()
            dropped = evicted + len(events) - len(rows)
            if dropped:
                self._bump("dropped", dropped)
                self._bump("bound_reached", 1)
            if journal_seq is not None:
                db.execute(
                    "INSERT OR REPLACE INTO counters VALUES ('journal_seq', ?)", (journal_seq,)
                )
            db.execute("COMMIT")  # a full disk may refuse the commit itself
        except BaseException:
            self._rollback()
            self._open = None  # the rolled-back rows may have made or extended it
            raise
        self._acked.clear()  # their deletes are committed
        self._size += len(rows) - evicted - deleted
        if dropped:
            self._dropped += dropped
            self._bound_reached += 1
        if journal_seq is not None:
            self.journal_seq = journal_seq
        return dropped

    def _assign(self) -> None:
        """Put every event not yet in a batch into batches (inside the caller's transaction)."""
        db = self._db
        first, last = db.execute(
            "SELECT (SELECT coalesce(max(last_id), 0) FROM batches) + 1, "
            "(SELECT coalesce(max(id), 0) FROM events)"
        ).fetchone()
        row = None
        if self._open is not None and first <= last:
            row = db.execute(
                "SELECT first_id FROM batches WHERE batch_id = ?", (self._open,)
            ).fetchone()
        if row is not None:
            end = min(last, row[0] + self.max_batch - 1)
            if end >= first:
                db.execute("UPDATE batches SET last_id = ? WHERE batch_id = ?", (end, self._open))
                first = end + 1
        while first <= last:
            end = min(last, first + self.max_batch - 1)
            self._open = str(uuid.uuid4())
            db.execute("INSERT INTO batches VALUES (?, ?, ?)", (self._open, first, end))
            first = end + 1

    def _delete_acked(self) -> int:
        """Delete the events of acknowledged batches the disk refused before; returns how many."""
        deleted = 0
        for batch_id, (first, last, _) in self._acked.items():
            deleted += self._db.execute(
                "DELETE FROM events WHERE id BETWEEN ? AND ?", (first, last)
            ).rowcount
            self._db.execute("DELETE FROM batches WHERE batch_id = ?", (batch_id,))
        return deleted

    def _drop_oldest(self, count: int) -> int:
        db = self._db
        flight = self._in_flight
        if flight is not None:  # spare the batch in flight as long as others can go
            _, first, last = flight
            removed = db.execute(
                "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE id NOT BETWEEN ? "
                "AND ? ORDER BY id LIMIT ?)",
                (first, last, count),
            ).rowcount
        else:
            removed = 0
        if removed < count:
            removed += db.execute(
                "DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id LIMIT ?)",
                (count - removed,),
            ).rowcount
        if removed:
            db.execute(
                "DELETE FROM batches WHERE NOT EXISTS (SELECT 1 FROM events "
                "WHERE id BETWEEN batches.first_id AND batches.last_id)"
            )
            if (
                self._open is not None
                and not db.execute(
                    "SELECT 1 FROM batches WHERE batch_id = ?", (self._open,)
                ).fetchone()
            ):
                self._open = None
        return int(removed)

    def _bump(self, name: str, by: int) -> None:
        self._db.execute(
            "INSERT INTO counters VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, by),
        )

    def cut(self) -> Batch | None:
        """The oldest unacknowledged batch; None if there is none. Reads only (see the module
        docstring), except for events an older version of this file left outside batches."""
        db = self._db
        oldest = next(
            (row for row in db.execute(_OLDEST_BATCHES) if row[0] not in self._acked), None
        )
        if oldest is None:
            if not self._unassigned():
                return None
            db.execute("BEGIN IMMEDIATE")
            try:
                self._assign()
                db.execute("COMMIT")
            except BaseException:
                self._rollback()
                self._open = None
                raise
            return self.cut()
        batch_id, first, last = oldest
        if batch_id == self._open:
            self._open = None  # handed out: never extended again
        self._in_flight = (batch_id, first, last)
        bodies = db.execute(
            "SELECT body FROM events WHERE id BETWEEN ? AND ? ORDER BY id", (first, last)
        ).fetchall()
        return Batch(str(batch_id), [json.loads(body) for (body,) in bodies])

    def _rollback(self) -> None:
        # SQLite rolls back by itself after some errors (a full disk among them).
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def _unassigned(self) -> bool:
        return bool(
            self._db.execute(
                "SELECT 1 FROM events WHERE id > (SELECT coalesce(max(last_id), 0) FROM batches) "
                "LIMIT 1"
            ).fetchone()
        )

    def ack(self, batch_id: str) -> int:
        """Forget a batch the server accepted; returns how many events it held. A disk that
        refuses the delete does not fail the acknowledgement (see the module docstring)."""
        db = self._db
        row = db.execute(
            "SELECT first_id, last_id FROM batches WHERE batch_id = ?", (batch_id,)
        ).fetchone()
        if row is None or batch_id in self._acked:
            return 0
        if self._in_flight is not None and self._in_flight[0] == batch_id:
            self._in_flight = None
        (count,) = db.execute(
            "SELECT count(*) FROM events WHERE id BETWEEN ? AND ?", row
        ).fetchone()
        self._acked[batch_id] = (row[0], row[1], int(count))
        try:
            db.execute("BEGIN IMMEDIATE")
            deleted = self._delete_acked()
            db.execute("COMMIT")
        except sqlite3.Error:
            self._rollback()
            return int(count)  # kept in memory; the next append deletes them
        except BaseException:
            self._rollback()
            raise
        self._acked.clear()
        self._size -= deleted
        return int(count)
