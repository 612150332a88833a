"""What every command needs: settings, the store, the policy directory."""

from __future__ import annotations

from pathlib import Path

import typer
from sqlalchemy import Engine

from enforcer.config import Settings, get_settings
from enforcer.store.db import open_store

POLICIES_OPTION = typer.Option(
    None, "--policies", help="Policy directory (default: ENFORCER_POLICY_DIR or ./policies)."
)


def settings() -> Settings:
    return get_settings()


def policy_dir(option: Path | None) -> Path:
    return option if option is not None else settings().policy_dir


def store() -> Engine:
    """The migrated store named by ENFORCER_DATABASE_URL."""
    return open_store(settings().database_url)
