"""One real API server per test module for the hardening suite: uvicorn on 127.0.0.1, SQLite.

Fuzzing sends thousands of requests; starting a server per example would measure start-up, so
a module shares one (`module_api`). Its long-poll is capped at 50 ms (the watcher's
`wait_for_change` is wrapped): a fuzzed ``wait=60`` must not hold a test for a minute, and the cap
changes nothing else of the code path under test.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI
from sqlalchemy import create_engine, text

from enforcer.api import ApiLimits, create_app
from enforcer.store.db import make_engine
from enforcer.store.migrate import upgrade
from tests.api.conftest import ADMIN, SECRET, Api, running, settings
from tests.conftest import PG_URL

__all__ = ["ADMIN", "BACKENDS", "SECRET", "Api", "capped_long_poll", "serve_store", "store_url"]

BACKENDS = ["sqlite", "postgresql"] if PG_URL else ["sqlite"]
"""Store back ends to run against: PostgreSQL too when ENFORCER_TEST_DATABASE_URL is set."""

MAX_TEST_WAIT = 0.05


def capped_long_poll(app: FastAPI, cap: float = MAX_TEST_WAIT) -> None:
    """Make the app's long-poll hold requests at most `cap` seconds."""
    watcher = app.state.ctx.watcher
    wait_for_change = watcher.wait_for_change

    async def capped(revision: int, epoch: str | None, timeout: float) -> bool:
        return bool(await wait_for_change(revision, epoch, min(timeout, cap)))

    watcher.wait_for_change = capped


@contextmanager
def store_url(backend: str, application_name: str = "") -> Iterator[str]:
    """A migrated, empty store: a SQLite file, or a PostgreSQL schema of its own (dropped after).

    `application_name` tags the PostgreSQL sessions of whoever uses the URL, so that a fault
    test can find (and terminate) exactly its own connections and nobody else's.
    """
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{Path(tmp) / 'store.db'}"
            engine = make_engine(url)
            upgrade(engine)
            engine.dispose()
            yield url
        return
    schema = f"h_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    url = f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    if application_name:
        url += f"&application_name={application_name}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        from tests.conftest import drop_schema

        drop_schema(admin, schema)  # retried if a server thread still reads it
        admin.dispose()


@contextmanager
def serve_store(backend: str = "sqlite", limits: ApiLimits | None = None) -> Iterator[Api]:
    """A fresh store served by `create_app` on a free port; yields the `Api` helper."""
    with store_url(backend) as url:
        engine = make_engine(url)
        app = create_app(
            settings(),
            engine,
            limits or ApiLimits(poll_interval=0.02, enroll_per_minute=1_000_000),
        )
        capped_long_poll(app)
        try:
            with running(app) as base, httpx.Client(base_url=base, timeout=30) as client:
                yield Api(base, engine, client)
        finally:
            engine.dispose()
