"""The Alembic migrations create exactly the tables the code declares, on both back ends, and
`store.migrate` tells a migrated store from one that is not."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, text
from sqlmodel import SQLModel

from enforcer.store.db import make_engine
from enforcer.store.migrate import HEAD, _config, code_head, current_revision, is_current, upgrade
from enforcer.store.tables import accounts, devices, discovery, indicators, sessions

TABLE_MODULES = (accounts, devices, discovery, indicators, sessions)
"""Imported for their effect: each registers its tables on `SQLModel.metadata`."""


def test_migrated_schema_matches_the_models(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []


def test_the_expiry_index_is_partial_on_both_back_ends(engine: Engine) -> None:
    # The model leaves the predicate out (see IndicatorRow); the migration must still create it.
    query = {
        "sqlite": "SELECT sql FROM sqlite_master WHERE name = 'ix_indicator_expiration'",
        "postgresql": "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_indicator_expiration'"
        " AND schemaname = current_schema()",
    }[engine.dialect.name]
    with engine.connect() as conn:
        definition = conn.execute(text(query)).scalar_one()
    assert "expiration_time IS NOT NULL" in definition


def test_head_is_the_newest_migration_of_the_migrations_directory() -> None:
    from alembic.script import ScriptDirectory

    assert ScriptDirectory.from_config(_config()).get_current_head() == HEAD


def test_a_migrated_store_is_at_the_code_head_and_upgrade_is_idempotent(engine: Engine) -> None:
    assert current_revision(engine) == code_head()
    assert is_current(engine)
    upgrade(engine)  # already there: a no-op
    assert current_revision(engine) == code_head()


def test_an_empty_store_is_not_current_until_upgraded(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    assert current_revision(engine) is None and not is_current(engine)
    upgrade(engine)
    assert is_current(engine)
    engine.dispose()
