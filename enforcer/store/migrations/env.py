"""Alembic environment: runs on the engine that `enforcer.store.migrate.upgrade` passes in."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(
        connection=connection, target_metadata=SQLModel.metadata, render_as_batch=True
    )
    with context.begin_transaction():
        context.run_migrations()
