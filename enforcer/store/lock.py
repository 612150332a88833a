"""Leader election: exactly one daemon applies at a time.

PostgreSQL: a session-level advisory lock held on a dedicated connection (it is released by the
server when the holder's connection dies, so a standby takes over on its next tick). SQLite: an
exclusive `flock` on a file beside the database (released by the kernel when the process dies).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Engine, text

ADVISORY_CLASS = 0x656E66  # "enf"; the second key is the schema, so schemas do not contend
_TRY = "SELECT pg_try_advisory_lock(:k, hashtext(current_schema()))"
_UNLOCK = "SELECT pg_advisory_unlock(:k, hashtext(current_schema()))"


class LeaderLock:
    """Try-acquire, non-blocking; `held` says whether this process is the leader."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._conn: Any = None
        self._file: IO[bytes] | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None or self._file is not None

    def acquire(self) -> bool:
        """Take the lock if it is free; keep it if already held. Never blocks."""
        if self._engine.dialect.name == "postgresql":
            return self._acquire_pg()
        return self._acquire_file()

    def _acquire_pg(self) -> bool:
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT 1"))
                return True
            except Exception:
                self._drop_conn()
        conn = self._engine.connect()
        try:
            got = bool(conn.execute(text(_TRY), {"k": ADVISORY_CLASS}).scalar())
            conn.commit()
        except Exception:
            conn.close()
            raise
        if got:
            self._conn = conn
        else:
            conn.close()
        return got

    def _drop_conn(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.invalidate()
            self._conn.close()
        self._conn = None

    def _lock_path(self) -> Path:
        db = self._engine.url.database or "memory"
        return (
            Path(f"{db}.leader")
            if db not in ("", ":memory:", "memory")
            else Path(f"/tmp/enforcer-{os.getuid()}.leader")
        )

    def _acquire_file(self) -> bool:
        if self._file is not None:
            return True
        handle = open(self._lock_path(), "ab")  # noqa: SIM115 - kept open while the lock is held
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._file = handle
        return True

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.execute(text(_UNLOCK), {"k": ADVISORY_CLASS})
                self._conn.commit()
            self._drop_conn()
        if self._file is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
