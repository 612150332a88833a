"""The shim's local copy of its indicator set: a SQLite file in the state directory.

Why a cache: a device that restarts while the server is unreachable (a laptop on a plane, a
server upgrade) must enforce the last set it knew from its first query on, not fail open until
the server answers. So the shim loads this file into its matcher before it opens its listeners,
and every delta from the server is written here in one transaction together with its revision:
after a crash the file holds either the old set and old revision or the new set and new
revision, never a mix, and the next sync resumes from the revision it holds.

WAL mode keeps a write from blocking a reader and makes a commit a single sequential append.
The connection is opened with ``check_same_thread=False`` because the sync client writes from
a worker thread (a million-row snapshot must not stall the event loop); callers use one
thread at a time.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

from enforcer.models import Action, Indicator, Severity

_SCHEMA = """
CREATE TABLE IF NOT EXISTS indicators (
    scope TEXT NOT NULL,
    value TEXT NOT NULL,
    action TEXT NOT NULL,
    app_id TEXT NOT NULL DEFAULT '',
    severity TEXT NOT NULL DEFAULT 'Medium',
    title TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (scope, value)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_SELECT = "SELECT scope, value, action, app_id, severity, title FROM indicators"


def _indicator(row: tuple[str, str, str, str, str, str]) -> Indicator:
    scope, value, action, app_id, severity, title = row
    return Indicator(
        value=value,
        action=Action(action),
        severity=Severity(severity),
        scope=scope,
        title=title,
        app_id=app_id,
    )


class IndicatorCache:
    """Indicators by (scope, value), the revision they are at and that revision's epoch."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the file."""
        self._db.close()

    @property
    def revision(self) -> int | None:
        """The revision of the cached set, or None when no set was ever stored."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()
        return int(row[0]) if row else None

    @property
    def epoch(self) -> str | None:
        """The epoch of the cached revision (which history of the store it belongs to), or
        None when the server did not send one."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
        return str(row[0]) if row else None

    @property
    def groups(self) -> tuple[str, ...] | None:
        """The device groups the cached set was synced for (a revision is only valid for them)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'groups'").fetchone()
        return tuple(g for g in row[0].split("\n") if g) if row else None

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM indicators").fetchone()[0])

    def indicators(self) -> Iterator[Indicator]:
        """Every cached indicator (streamed, not loaded as a list)."""
        return map(_indicator, self._db.execute(_SELECT))

    def salvage(self) -> Iterator[Indicator]:
        """The indicators still readable from a damaged file: rows up to the first unreadable
        page, skipping rows whose values no longer parse. For the agent, which keeps enforcing
        them while it re-syncs from scratch (see `Agent.start`)."""
        try:
            for row in self._db.execute(_SELECT):
                try:
                    yield _indicator(row)
                except (ValueError, TypeError):
                    continue
        except sqlite3.DatabaseError:
            return

    def apply(
        self,
        revision: int,
        upserts: Iterable[Indicator],
        removes: Iterable[tuple[str, str]],
        *,
        snapshot: bool = False,
        groups: Iterable[str] = (),
        epoch: str | None = None,
    ) -> None:
        """Store one delta (or, with `snapshot`, a whole new set) and its revision atomically.

        `groups` are the device groups the server answered for and `epoch` the revision's
        epoch, both kept with the revision.
        """
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if snapshot:
                db.execute("DELETE FROM indicators")
            db.executemany(
                "DELETE FROM indicators WHERE scope = ? AND value = ?",
                ((scope, value) for scope, value in removes),
            )
            db.executemany(
                "INSERT OR REPLACE INTO indicators VALUES (?, ?, ?, ?, ?, ?)",
                (
                    (i.scope, i.value, str(i.action), i.app_id, str(i.severity), i.title)
                    for i in upserts
                ),
            )
            db.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                [("revision", str(revision)), ("groups", "\n".join(sorted(set(groups))))],
            )
            if epoch is None:
                db.execute("DELETE FROM meta WHERE key = 'epoch'")
            else:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('epoch', ?)", (epoch,))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
