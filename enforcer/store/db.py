"""Engines for the store: SQLite (default, WAL, real transactions) or PostgreSQL, migrated on open."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.pool import NullPool

from enforcer.config import default_database_url
from enforcer.errors import StoreUrlError
from enforcer.store.migrate import upgrade

SUPPORTED = (
    "use sqlite:///PATH (the default store) or postgresql://USER@HOST/DATABASE "
    "(postgres:// works too; the bundled driver is psycopg)"
)


def store_url(url: str) -> str:
    """`url` as SQLAlchemy opens it: ``postgres://`` and ``postgresql://`` (the forms every
    other tool accepts) get the bundled psycopg driver. StoreUrlError, one line saying what is
    supported, for anything else (``mysql://``, a bare path)."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise StoreUrlError(f"ENFORCER_DATABASE_URL {url!r} is not a URL: {SUPPORTED}")
    if scheme in ("postgres", "postgresql"):
        return f"postgresql+psycopg://{rest}"
    if scheme in ("sqlite", "postgresql+psycopg"):
        return url
    shown = f"{scheme}://..." if "@" in rest else url  # never echo a password
    raise StoreUrlError(f"ENFORCER_DATABASE_URL {shown!r} is not supported: {SUPPORTED}")


def make_engine(url: str, *, pool: bool = True, **pool_options: Any) -> Engine:
    """An engine for `url` (see `store_url`); SQLite files get WAL and transactions that
    really begin at BEGIN. A SQLite file's directory must exist, except the default one (the
    user's data directory), which is created: a mistyped path is an error, not a new empty
    store. `pool_options` (``pool_size``, ``max_overflow``, ``pool_timeout``) size the
    connection pool."""
    url = store_url(url)
    if url.startswith("sqlite"):
        _ensure_sqlite_dir(url)
        engine = create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            poolclass=None if pool else NullPool,
            **pool_options,
        )
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(
        url, pool_pre_ping=True, poolclass=None if pool else NullPool, **pool_options
    )


def _ensure_sqlite_dir(url: str) -> None:
    path = url.split(":///", 1)[-1]
    if not path or path == ":memory:" or path.startswith("file:") or "://" in path:
        return
    directory = Path(path).expanduser().parent
    if directory.is_dir():
        return
    if directory == Path(default_database_url().split(":///", 1)[-1]).parent:
        directory.mkdir(parents=True, exist_ok=True)
        return
    raise StoreUrlError(
        f"the directory of the SQLite store {path!r} does not exist: create it, or fix "
        "ENFORCER_DATABASE_URL (a store is never created in a directory that is not there)"
    )


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own transaction handling starts transactions late; take control of BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    # 64 MiB of page cache: index inserts of a million-row apply land in random order.
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN")


def server_now(engine: Engine) -> dt.datetime:
    """The database server's clock (PostgreSQL; SQLite has no server of its own)."""
    with engine.connect() as conn:
        now: dt.datetime = conn.execute(text("SELECT now()")).scalar_one()
    return now


def open_store(url: str) -> Engine:
    """An engine on a migrated store."""
    engine = make_engine(url)
    upgrade(engine)
    return engine
