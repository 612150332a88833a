"""What every command needs: settings, the store, the policy directory (each imported on use), and
who the command's changes are recorded as in the audit log (`actor`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from enforcer.config import Settings

POLICIES_OPTION = typer.Option(
    None, "--policies", help="Policy directory (default: ENFORCER_POLICY_DIR or ./policies)."
)


def settings() -> Settings:
    """The settings, read from the environment and the settings file now."""
    from enforcer.config import get_settings

    return get_settings()


def policy_dir(option: Path | None) -> Path:
    """The `--policies` option, or the configured policy directory."""
    return option if option is not None else settings().policy_dir


def store() -> Engine:
    """The migrated store named by ENFORCER_DATABASE_URL."""
    from enforcer.store.db import open_store

    return open_store(settings().database_url)


_ACTOR: list[str] = []
"""The root option ``--actor``, when given."""


def set_actor(name: str | None) -> None:
    """Record the changes of this command as `name` (the root option ``--actor``)."""
    _ACTOR[:] = [name.strip()] if name and name.strip() else []


def actor() -> str:
    """Who this command's changes are recorded as: ``--actor``, else the OS user."""
    if _ACTOR:
        return _ACTOR[0]
    import getpass
    import os

    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (a bare container)
        return f"uid {os.getuid()}"


def raise_file_limit() -> None:
    """Let a long-running process (the shim, the server) hold as many sockets as the host
    allows: the soft descriptor limit up to the hard one. The usual soft limit of 1,024 is
    reached by one busy browser behind the shim, or by a thousand long-polling devices."""
    import contextlib
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    with contextlib.suppress(ValueError, OSError):  # the host says no: run with what it has
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
