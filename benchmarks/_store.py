"""Benchmark helper: a fresh, migrated store (a SQLite file, or a new PostgreSQL schema)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, create_engine, text

from enforcer.store.db import make_engine
from enforcer.store.migrate import upgrade


@contextlib.contextmanager
def fresh_store(url: str, work: Path, name: str = "store") -> Iterator[tuple[str, Engine]]:
    """Yields (url, engine) of an empty migrated store; a PostgreSQL schema is dropped after."""
    schema = None
    if not url:
        url = f"sqlite:///{work / (name + '.db')}"
    elif url.startswith("postgresql"):
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        with create_engine(url).begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        base = url
        url = f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    engine = make_engine(url)
    upgrade(engine)
    try:
        yield url, engine
    finally:
        engine.dispose()
        if schema is not None:
            admin = create_engine(base)
            with admin.begin() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            admin.dispose()
