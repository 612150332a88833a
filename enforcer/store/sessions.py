"""Console sessions ended on the server: a signed-out session's id, until its cookie expires.

A console session is a signed cookie, so it would stay valid until its expiry whoever holds a
copy; signing out records its id here, and the console refuses a session whose id is here.
Rows are kept only until the cookie would have expired anyway (pruned at each sign-out).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, delete, exists, insert, select
from sqlalchemy.exc import IntegrityError

from enforcer.store.tables.indicators import utcnow
from enforcer.store.tables.sessions import SESSION_ENDED


def end_session(
    engine: Engine, sid: str, expires_at: dt.datetime, now: dt.datetime | None = None
) -> None:
    """Record that the session `sid` (valid until `expires_at`) was signed out."""
    now = now or utcnow()
    with engine.begin() as conn:
        conn.execute(delete(SESSION_ENDED).where(SESSION_ENDED.c.expires_at < now))
        try:
            with conn.begin_nested():
                conn.execute(insert(SESSION_ENDED).values(sid=sid, expires_at=expires_at))
        except IntegrityError:
            pass  # signed out twice (two tabs): already recorded


def session_ended(engine: Engine, sid: str) -> bool:
    """Whether the session `sid` was signed out."""
    with engine.connect() as conn:
        return bool(conn.execute(select(exists().where(SESSION_ENDED.c.sid == sid))).scalar())


__all__ = ["end_session", "session_ended"]
