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

Damage (a disk that loses or overwrites pages, a file cut short or emptied): the last good set
stays recoverable from a compact second copy, ``indicators.sqlite.last-good``, which `apply`
refreshes after every whole set and at most every ``copy_interval`` seconds after deltas
(SQLite's ``VACUUM INTO`` a new file, then an atomic rename: the copy is always a whole set,
and a damaged cache never replaces it, as ``VACUUM`` refuses to read one). At start
`open_cache` tells a damaged cache from a read-only one; for a damaged one the agent enforces
the last good copy plus every row `salvage` can still read from the damaged file's pages,
until the server's whole set replaces them.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import struct
import time
from collections.abc import Iterable, Iterator
from enum import StrEnum
from pathlib import Path
from urllib.parse import quote

import structlog

from enforcer.models import Action, Indicator, Severity

log = structlog.get_logger(__name__)

COPY_SUFFIX = ".last-good"
COPY_INTERVAL = 300.0
"""Seconds between two refreshes of the last good copy while only deltas arrive."""

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

    def __init__(
        self, path: Path, *, copy_interval: float = COPY_INTERVAL, read_only: bool = False
    ) -> None:
        """Open (or create) the cache at `path`; with `read_only`, open an existing file for
        reading only (a read-only state directory: every `apply` then fails). ``:memory:``:
        a cache that is not kept (the state directory takes no file)."""
        self.path = path
        self.copy_interval = copy_interval
        self.kept = str(path) != ":memory:" and not read_only
        """Whether `apply` writes a file (and keeps the last good copy)."""
        if read_only:
            uri = f"file:{quote(str(path.resolve()))}?immutable=1"
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
            self._db.execute("SELECT count(*) FROM meta").fetchone()  # fails here if unreadable
            self._dirty_since: float | None = None
            return
        if self.kept:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        if self.kept:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._dirty_since = None
        """When the first change the last good copy lacks was applied (None: it has them all)."""
        if self.kept and not copy_path(path).exists() and self.revision is not None:
            self._dirty_since = 0.0  # a cache from before copies were kept: copy at next apply

    def close(self) -> None:
        """Close the file, first bringing the last good copy up to date."""
        if self.kept and self._dirty_since is not None:
            self.keep_copy()
        self._db.close()

    def keep_copy(self) -> bool:
        """Replace the last good copy by the cache's current set (atomically); False when the
        disk refused (logged: the older copy stays)."""
        target = copy_path(self.path)
        partial = target.with_name(target.name + ".new")
        try:
            partial.unlink(missing_ok=True)
            self._db.execute("VACUUM INTO ?", (str(partial),))
            with open(partial, "rb+") as written:
                os.fsync(written.fileno())
            os.replace(partial, target)
        except (sqlite3.Error, OSError) as exc:
            log.warning("shim.cache_copy_failed", path=str(target), error=repr(exc))
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
            return False
        self._dirty_since = None
        return True

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
            db.execute("COMMIT")  # a full disk may refuse the commit itself
        except BaseException:
            if db.in_transaction:  # SQLite rolls back by itself after some errors
                db.execute("ROLLBACK")
            raise
        if not self.kept:
            return
        if self._dirty_since is None:
            self._dirty_since = time.monotonic()
        if snapshot or time.monotonic() - self._dirty_since >= self.copy_interval:
            self.keep_copy()


def copy_path(path: Path) -> Path:
    """Where the last good copy of the cache at `path` is kept."""
    return path.with_name(path.name + COPY_SUFFIX)


class Condition(StrEnum):
    """What `open_cache` found."""

    OK = "ok"
    READ_ONLY = "read_only"
    """Readable, but the state directory takes no writes: enforced, not updated on disk."""
    DAMAGED = "damaged"
    """Not a whole cache (not SQLite, empty, cut short, unreadable pages)."""


def open_cache(path: Path) -> tuple[IndicatorCache | None, Condition]:
    """Open the cache at `path` for the agent's start: (cache, condition); no cache when it
    is damaged (the caller salvages it, see `recover`)."""
    if _emptied(path):
        return None, Condition.DAMAGED
    try:
        return IndicatorCache(path), Condition.OK
    except sqlite3.DatabaseError as exc:
        if _writable(path.parent) and not _readonly_error(exc):
            return None, Condition.DAMAGED
    try:
        return IndicatorCache(path, read_only=True), Condition.READ_ONLY
    except sqlite3.DatabaseError:
        return None, Condition.DAMAGED


def _emptied(path: Path) -> bool:
    """A zero-length file (and no WAL holding its pages) is not a valid cache: the shim never
    leaves one (the header is written when the file is made), a truncated file does."""
    try:
        if path.stat().st_size > 0:
            return False
    except FileNotFoundError:
        return False
    wal = path.with_name(path.name + "-wal")
    return not (wal.exists() and wal.stat().st_size > 0)


def _writable(directory: Path) -> bool:
    return os.access(directory, os.W_OK)


def _readonly_error(exc: sqlite3.DatabaseError) -> bool:
    text = str(exc).lower()
    return "readonly" in text or "read-only" in text or "unable to open" in text


def recover(path: Path) -> Iterator[Indicator]:
    """What a damaged cache leaves to enforce: the last good copy, then every row that can
    still be read from the damaged file's pages (newer: they win per scope and name)."""
    copy = copy_path(path)
    if copy.exists():
        try:
            reader = IndicatorCache(copy, read_only=True)
            rows = list(reader.indicators())
            reader.close()
        except sqlite3.DatabaseError:
            log.warning("shim.cache_copy_damaged", path=str(copy))
            rows = list(salvage(copy))
        log.info("shim.cache_copy_loaded", path=str(copy), indicators=len(rows))
        yield from rows
    yield from salvage(path)


_RANK = {Action.BLOCK: 4, Action.WARN: 3, Action.ALERT: 2, Action.AUDIT: 1, Action.ALLOWED: 0}


def salvage(path: Path) -> Iterator[Indicator]:
    """Every indicator row readable in the pages of a damaged cache file and its WAL.

    SQLite stops a query at the first page it cannot read; this reads each page on its own
    (the file format is documented: https://www.sqlite.org/fileformat2.html) and decodes the
    cells of every b-tree leaf that parse as a six-column indicator row, so damage to some
    pages costs only their rows. A row found twice (an older copy of a page in the WAL or on
    the free list) keeps its most restrictive action: the device fails closed until the
    server's set arrives. Rows spilled to overflow pages (titles of kilobytes) are skipped.
    """
    found: dict[tuple[str, str], Indicator] = {}
    for page in _pages(path):
        for indicator in _page_rows(page):
            key = (indicator.scope, indicator.value)
            known = found.get(key)
            if known is None or _RANK[indicator.action] > _RANK[known.action]:
                found[key] = indicator
    log.info("shim.cache_salvaged_rows", path=str(path), indicators=len(found))
    return iter(found.values())


def _pages(path: Path) -> Iterator[bytes]:
    """The pages of a database file, then those of its WAL (the page size from either
    header, else the usual 4096)."""
    try:
        data = path.read_bytes()
    except OSError:
        data = b""
    size = _page_size(data[16:18]) if data.startswith(b"SQLite format 3\x00") else 0
    wal = b""
    with contextlib.suppress(OSError):
        wal = path.with_name(path.name + "-wal").read_bytes()
    wal_size = struct.unpack(">I", wal[8:12])[0] if len(wal) >= 32 else 0
    size = size or (wal_size if _valid_size(wal_size) else 4096)
    for start in range(0, len(data), size):
        yield data[start : start + size]
    if _valid_size(wal_size):
        frame = 24 + wal_size
        for start in range(32, len(wal) - frame + 1, frame):
            yield wal[start + 24 : start + frame]


def _page_size(raw: bytes) -> int:
    (value,) = struct.unpack(">H", raw) if len(raw) == 2 else (0,)
    size = 65536 if value == 1 else value
    return size if _valid_size(size) else 0


def _valid_size(size: int) -> bool:
    return 512 <= size <= 65536 and size & (size - 1) == 0


def _page_rows(page: bytes) -> Iterator[Indicator]:
    """The indicator rows of one page, if it is a b-tree leaf (page 1 starts after the file
    header); anything that does not parse is skipped."""
    for offset in (0, 100):
        if len(page) < offset + 8 or page[offset] not in (0x0A, 0x0D):
            continue
        kind = page[offset]
        (cells,) = struct.unpack(">H", page[offset + 3 : offset + 5])
        usable = len(page)
        local_max = (usable - 12) * 64 // 255 - 23 if kind == 0x0A else usable - 35
        for i in range(cells):
            at = offset + 8 + 2 * i
            if at + 2 > len(page):
                break
            (cell,) = struct.unpack(">H", page[at : at + 2])
            with contextlib.suppress(ValueError, IndexError, TypeError, UnicodeDecodeError):
                payload_size, pos = _varint(page, cell)
                if kind == 0x0D:
                    _, pos = _varint(page, pos)  # the rowid
                if payload_size > local_max:
                    continue
                values = _record(page[pos : pos + payload_size])
                if len(values) == 6:
                    yield _indicator(values)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(9):
        byte = data[pos + i]
        if i == 8:
            return (value << 8) | byte, pos + 9
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, pos + i + 1
    raise ValueError("bad varint")


def _record(payload: bytes) -> tuple[str, ...]:
    """The values of a record whose columns are all text (anything else raises ValueError)."""
    header_size, pos = _varint(payload, 0)
    types = []
    while pos < header_size:
        serial, pos = _varint(payload, pos)
        if serial < 13 or serial % 2 == 0:
            raise ValueError("not a text column")
        types.append((serial - 13) // 2)
    values = []
    pos = header_size
    for length in types:
        if pos + length > len(payload):
            raise ValueError("record cut short")
        values.append(payload[pos : pos + length].decode("utf-8"))
        pos += length
    return tuple(values)
