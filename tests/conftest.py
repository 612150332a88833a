"""Shared fixtures: a small catalog of test apps and stores on SQLite and (when configured) PostgreSQL.

PostgreSQL tests run when ENFORCER_TEST_DATABASE_URL is set (CI sets it); each test gets a fresh
schema of its own, so tests never see each other's rows.
"""

from __future__ import annotations

import os
import sqlite3
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from sqlalchemy import Engine, create_engine, text

from enforcer.catalog import App, Catalog, RiskAttributes
from enforcer.store.db import make_engine
from enforcer.store.migrate import upgrade

PG_URL = os.environ.get("ENFORCER_TEST_DATABASE_URL", "")

# Tests that do not configure logging get structlog's default console renderer, which formats an
# exception with rich and every frame's local variables: a traceback over a 5,000-row answer took
# most of a minute to render. Tests read the message, not the locals: plain tracebacks.
structlog.configure(
    processors=[
        *structlog.get_config()["processors"][:-1],
        structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        ),
    ]
)

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


class _Templates:
    """Stores migrated once per test process and copied for each test: running the migrations
    took one to four seconds a store on the CI machine, for each of some 500 stores."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._sqlite: Path | None = None
        self._pg_sql: str | None = None
        self._pg_name = ""

    def sqlite(self, target: Path) -> None:
        """A migrated SQLite store at `target` (an online backup of the template: no WAL left)."""
        if self._sqlite is None:
            path = self.root / "template.db"
            engine = make_engine(f"sqlite:///{path}")
            upgrade(engine)
            engine.dispose()
            self._sqlite = path
        with sqlite3.connect(self._sqlite) as src, sqlite3.connect(target) as dst:
            src.backup(dst)
        dst.close()
        src.close()

    def postgresql(self, admin: Engine, schema: str) -> None:
        """Create `schema` as a copy of a migrated template schema (its pg_dump, renamed), or
        migrate it where pg_dump is missing or fails."""
        if self._pg_sql is None:
            self._pg_sql = self._dump_template(admin) or ""
        if not self._pg_sql:
            with admin.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            upgrade(make_engine(_in_schema(schema)))
            return
        raw = admin.raw_connection()
        try:
            with raw.cursor() as cur:
                cur.execute(self._pg_sql.replace(self._pg_name, schema))
            raw.commit()
        finally:
            raw.close()

    def _dump_template(self, admin: Engine) -> str | None:
        import shutil
        import subprocess

        name = f"tmpl_{uuid.uuid4().hex[:12]}"
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{name}"'))
        try:
            upgrade(make_engine(_in_schema(name)))
            pg_dump = shutil.which("pg_dump")
            if pg_dump is None:
                return None
            libpq = admin.url.set(drivername="postgresql").render_as_string(hide_password=False)
            done = subprocess.run(
                [pg_dump, "--inserts", "--no-owner", "--no-privileges", "-n", name, libpq],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            if done.returncode != 0 or name not in done.stdout:
                return None
            self._pg_name = name
            # The dump empties search_path for its session; the schema is made by the dump.
            return "\n".join(line for line in done.stdout.splitlines() if not line.startswith("\\"))
        finally:
            drop_schema(admin, name)


def _in_schema(schema: str) -> str:
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture(scope="session")
def _templates(tmp_path_factory: pytest.TempPathFactory) -> _Templates:
    return _Templates(tmp_path_factory.mktemp("templates"))


@pytest.fixture(params=_backends())
def db_url(request: pytest.FixtureRequest, tmp_path: Path, _templates: _Templates) -> Iterator[str]:
    """A migrated, empty store: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        path = tmp_path / "store.db"
        _templates.sqlite(path)
        yield f"sqlite:///{path}"
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    _templates.postgresql(admin, schema)
    yield _in_schema(schema)
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
