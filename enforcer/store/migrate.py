"""The store's schema migrations (Alembic): the code's newest revision, the store's, and upgrade.

This is the one module that talks to Alembic; the API's readiness probe, `enforcer doctor` and
`open_store` ask it whether a store is migrated instead of reading Alembic themselves.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from enforcer.errors import StoreUnavailableError

MIGRATIONS = Path(__file__).parent / "migrations"


def _config(engine: Engine | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


@cache
def code_head() -> str:
    """The newest migration this code knows (the revision a migrated store is at)."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "the migrations directory has no revisions"
    return head


def current_revision(engine: Engine) -> str | None:
    """The migration the store is at (None: never migrated); the driver's error if unreachable."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def is_current(engine: Engine) -> bool:
    """Whether the store is at the code's newest migration; the driver's error if unreachable."""
    return current_revision(engine) == code_head()


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration (a no-op when it is there already)."""
    try:
        current = is_current(engine)
    except OperationalError as exc:
        raise StoreUnavailableError(f"cannot reach the store: {exc.orig}") from exc
    if not current:
        command.upgrade(_config(engine), "head")
