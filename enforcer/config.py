"""Settings: the only place the environment is read.

Every setting can be given as an environment variable with the ``ENFORCER_`` prefix (for example
``ENFORCER_DATABASE_URL``) or in a settings file named by ``ENFORCER_SETTINGS_FILE`` (dotenv format,
``ENFORCER_...=value`` lines).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_database_url() -> str:
    """A SQLite file in the user's data directory (created on first use)."""
    data_dir = Path(platformdirs.user_data_dir("enforcer", appauthor=False))
    return f"sqlite:///{data_dir / 'enforcer.db'}"


class Settings(BaseSettings):
    """Enforcer's configuration. Field docstrings are the reference documentation."""

    model_config = SettingsConfigDict(
        env_prefix="ENFORCER_",
        env_file=os.environ.get("ENFORCER_SETTINGS_FILE"),
        extra="ignore",
    )

    database_url: str = Field(default_factory=default_database_url)
    """SQLAlchemy URL of the indicator store; SQLite by default, ``postgresql+psycopg://`` to scale."""

    policy_dir: Path = Path("policies")
    """Directory holding the organisation's policy files (``*.yaml``)."""

    policy_git_pull: bool = False
    """Run ``git pull --ff-only`` in the policy directory before each reload (daemon)."""

    reconcile_interval: float = 30.0
    """Seconds between two reconcile ticks of the daemon (a changed policy file triggers one at once)."""

    expire_interval: float = 60.0
    """Seconds between two runs of the daemon's expiry job."""

    discovery_interval: float = 30.0
    """Seconds between two runs of the daemon's continuous-report job (device events -> rollups)."""

    watch_policies: bool = True
    """Watch the policy directory and reconcile as soon as a file changes."""

    log_format: str = "auto"
    """``json``, ``console`` or ``auto`` (JSON when stderr is not a terminal)."""

    log_level: str = "info"
    """Minimum level of log events: debug, info, warning, error."""

    # --- server (enforcer serve) -----------------------------------------------------------

    admin_token: SecretStr | None = None
    """Bearer token of the admin API and console; the server refuses to start without one."""

    enroll_secret: SecretStr | None = None
    """Shared secret devices present once to enrol and receive their own device token."""

    server_host: str = "127.0.0.1"
    """Address `enforcer serve` listens on."""

    server_port: int = 8440
    """Port `enforcer serve` listens on."""


def get_settings() -> Settings:
    """Read the settings afresh (environment and settings file)."""
    return Settings()
