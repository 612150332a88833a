"""A store backup and its restore, done through SQL so that they work on both back ends.

`backup` copies every row of every table (what a dump holds); `restore` empties the tables
and puts the copied rows back, as restoring that dump into the same database would.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, MetaData, Table

Backup = list[tuple[Table, list[dict[str, Any]]]]


def backup(engine: Engine) -> Backup:
    """Every row of every table but Alembic's, in dependency order."""
    meta = MetaData()
    with engine.connect() as conn:
        meta.reflect(conn)
        return [
            (table, [dict(row._mapping) for row in conn.execute(table.select())])
            for table in meta.sorted_tables
            if table.name != "alembic_version"
        ]


def restore(engine: Engine, copy: Backup) -> None:
    """Make the store exactly what `copy` holds, in one transaction."""
    with engine.begin() as conn:
        for table, _rows in reversed(copy):
            conn.execute(table.delete())
        for table, rows in copy:
            if rows:
                conn.execute(table.insert(), rows)
