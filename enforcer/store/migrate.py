"""The store's schema migrations (Alembic): the code's newest revision, the store's, and upgrade.

This is the one module that talks to Alembic; the API's readiness probe, `enforcer doctor` and
`open_store` ask it whether a store is migrated instead of reading Alembic themselves. Only
`upgrade` imports Alembic, and only when the store is behind: every command opens the store,
and importing Alembic (its dialect modules, Mako, Pygments) was a sixth of `enforcer explain`.
The newest revision is therefore written here as `HEAD`; a test checks it against the
migrations directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import OperationalError

from enforcer.errors import StoreUnavailableError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"

HEAD = "0018"
"""The newest migration in ``migrations/versions`` (a new migration changes it; a test checks)."""


def _config(engine: Engine | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def code_head() -> str:
    """The newest migration this code knows (the revision a migrated store is at)."""
    return HEAD


def current_revision(engine: Engine) -> str | None:
    """The migration the store is at (None: never migrated); the driver's error if unreachable."""
    with engine.connect() as conn:
        # Alembic's own version table, read as MigrationContext.get_current_revision reads it.
        if not inspect(conn).has_table("alembic_version"):
            return None
        revision: str | None = conn.execute(
            text("SELECT version_num FROM alembic_version")
        ).scalar()
        return revision


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
        from alembic import command

        command.upgrade(_config(engine), "head")
