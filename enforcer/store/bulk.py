"""The bulk row writer: many rows through the driver, COPY on PostgreSQL, executemany on SQLite.

A plan's first apply writes a million indicator and change-log rows; SQLAlchemy's per-row
parameter processing and the ORM cannot do that within the targets in benchmarks/README.md,
so the store's bulk paths go through `insert_tuples`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, DateTime

CHUNK = 20_000


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    """Consecutive slices of `items` of at most `size`."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def insert_rows(conn: Connection, table: Any, rows: list[dict[str, Any]]) -> None:
    """`insert_tuples` for rows given as dicts (all with the same keys)."""
    if rows:
        columns = tuple(rows[0])
        insert_tuples(conn, table, columns, [tuple(r[c] for c in columns) for r in rows])


def insert_tuples(
    conn: Connection, table: Any, columns: Sequence[str], rows: list[tuple[Any, ...]]
) -> None:
    """Insert many rows through the driver: COPY on PostgreSQL, executemany on SQLite.

    SQLAlchemy's per-row parameter processing costs more than SQLite's insert itself at a
    million rows, so only the columns whose type needs a bind processor (the timestamps) are
    converted, memoised per distinct value (a plan holds a handful of distinct times).
    """
    if not rows:
        return
    raw = conn.connection.driver_connection
    assert raw is not None
    if conn.dialect.name == "postgresql":
        cols = ", ".join(f'"{c}"' for c in columns)
        with raw.cursor() as cur, cur.copy(f'COPY "{table.name}" ({cols}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row(row)
        return
    converters = _converters(conn, table, columns)
    if converters:
        rows = [_convert(row, converters) for row in rows]
    marks = ", ".join("?" for _ in columns)
    cols = ", ".join(f'"{c}"' for c in columns)
    cursor = raw.cursor()
    try:
        cursor.executemany(f'INSERT INTO "{table.name}" ({cols}) VALUES ({marks})', rows)
    finally:
        cursor.close()


def _converters(conn: Connection, table: Any, columns: Sequence[str]) -> list[tuple[int, Any]]:
    out = []
    for index, name in enumerate(columns):
        processor = table.c[name].type.bind_processor(conn.dialect)
        if processor is not None and _is_datetime(table.c[name].type):
            out.append((index, _memoised(processor)))
    return out


def _is_datetime(column_type: Any) -> bool:
    return isinstance(column_type, DateTime) or isinstance(
        getattr(column_type, "impl", None), DateTime
    )


def _memoised(processor: Callable[[Any], Any]) -> Callable[[Any], Any]:
    memo: dict[Any, Any] = {}

    def convert(value: Any) -> Any:
        if value is None:
            return None
        done = memo.get(value)
        if done is None:
            done = processor(value)
            if isinstance(done, dt.datetime):
                done = done.isoformat(" ")  # what sqlite3's own datetime adapter stores
            memo[value] = done
        return done

    return convert


def _convert(row: tuple[Any, ...], converters: list[tuple[int, Any]]) -> tuple[Any, ...]:
    values = list(row)
    for index, convert in converters:
        values[index] = convert(values[index])
    return tuple(values)
