"""Log files uploaded to Cloud Discovery, by content: the same bytes uploaded again are
recognised and skipped, so a re-upload never counts its traffic twice."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.exc import IntegrityError

from enforcer.store.tables.discovery import UPLOAD


def uploaded_at(conn: Connection, sha256: str) -> dt.datetime | None:
    """When content with this SHA-256 was uploaded (None: never)."""
    when: dt.datetime | None = conn.execute(
        select(UPLOAD.c.uploaded_at).where(UPLOAD.c.sha256 == sha256)
    ).scalar()
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when


def record_upload(
    engine: Engine, sha256: str, *, name: str, fmt: str, records: int, report: int = 0
) -> None:
    """Remember an upload's content, in the snapshot report it went to (a second record of
    the same content is a no-op; deleting the report forgets it)."""
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(UPLOAD).values(
                    sha256=sha256, name=name[-512:], format=fmt, records=records,
                    uploaded_at=dt.datetime.now(dt.UTC), report=report,
                )
            )  # fmt: skip
    except IntegrityError:
        pass  # the same content, recorded by a concurrent upload
