"""Shared fixtures: a small catalog of test apps and stores on SQLite and (when configured) PostgreSQL.

PostgreSQL tests run when ENFORCER_TEST_DATABASE_URL is set (CI sets it); each test gets a fresh
schema of its own, so tests never see each other's rows.
"""

from __future__ import annotations

import os
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from enforcer.catalog import App, Catalog, RiskAttributes
from enforcer.store.db import make_engine
from enforcer.store.migrate import upgrade

PG_URL = os.environ.get("ENFORCER_TEST_DATABASE_URL", "")

SAFE = RiskAttributes(
    founded=2005, hq_country="US", encryption_at_rest=True, mfa=True, sso=True, soc2=True,
    iso27001=True, gdpr=True, recent_breach=False, anonymous_use=False,
)  # fmt: skip
RISKY = RiskAttributes(
    founded=2021, hq_country="US", encryption_at_rest=False, mfa=False, sso=False, soc2=False,
    iso27001=False, gdpr=False, recent_breach=True, anonymous_use=True,
)  # fmt: skip


def make_app(app_id: str, category: str, domains: list[str], risky: bool = False) -> App:
    return App(
        id=app_id,
        name=app_id.replace("-", " ").title(),
        vendor=f"{app_id} Inc.",
        category=category,
        domains=tuple(domains),
        risk=RISKY if risky else SAFE,
    )


@pytest.fixture
def catalog() -> Catalog:
    return Catalog(
        [
            make_app("boxy", "file-sharing", ["boxy.example", "boxycdn.example"]),
            make_app(
                "sharefast",
                "file-sharing",
                ["sharefast.example", "dl.sharefast.example"],
                risky=True,
            ),
            make_app(
                "megashare",
                "file-sharing",
                ["megashare.example", "megashare-static.example"],
                risky=True,
            ),
            make_app("pastey", "paste", ["pastey.example"], risky=True),
            make_app("chatbot", "generative-ai", ["chatbot.example", "api.chatbot.example"]),
            make_app("suite", "productivity", ["suite.example", "login.idp.example"]),
            make_app(
                "suite-drive", "cloud-storage", ["drive.suite.example", "idp.example"], risky=True
            ),
            make_app("tunnelr", "vpn-proxy", ["tunnelr.example"], risky=True),
        ]
    )


def write_policy(directory: Path, name: str, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(body).lstrip())
    return path


def _backends() -> list[str]:
    return ["sqlite", "postgresql"] if PG_URL else ["sqlite"]


@pytest.fixture(params=_backends())
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty store: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
        upgrade(make_engine(url))
        yield url
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    url = f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    upgrade(make_engine(url))
    yield url
    drop_schema(admin, schema)
    admin.dispose()


def drop_schema(admin: Engine, schema: str) -> None:
    """Drop a test's schema. A background thread of the test's server (a report refresh, a
    roll-up) may still be reading it for a moment: the DROP can then deadlock with it and be
    chosen as the victim, so it is retried (the reader finishes meanwhile)."""
    import time

    from sqlalchemy.exc import DBAPIError

    for attempt in range(10):
        try:
            with admin.begin() as conn:
                conn.execute(text("SET LOCAL lock_timeout = '5s'"))
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            return
        except DBAPIError:
            if attempt == 9:
                raise
            time.sleep(0.2 * (attempt + 1))


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()
