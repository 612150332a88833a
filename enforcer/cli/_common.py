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


MALLOC_ARENAS = 2
"""glibc malloc arenas `enforcer serve` allows itself (`limit_malloc_arenas`)."""


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas (``mallopt(M_ARENA_MAX)``) for a long-running server; True
    when the cap was set.

    glibc gives threads arenas of their own, up to eight per core: the server's forty worker
    threads used sixteen on two cores, each keeping the freed memory of its busiest moment, so
    the server's resident memory crept up over hours without any Python object leaking
    (docs/reliability.md, "The one-hour soak"). Call it before the process starts threads: an
    arena created before stays. An explicit ``MALLOC_ARENA_MAX`` in the environment is glibc's
    own knob and wins; other C libraries are left alone."""
    import ctypes
    import os
    import sys

    if not sys.platform.startswith("linux") or os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 (glibc only: musl's mallopt ignores M_ARENA_MAX)
    except (OSError, AttributeError):
        return False
    m_arena_max = -8
    return bool(mallopt(ctypes.c_int(m_arena_max), ctypes.c_int(arenas)))


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


def days_of(since: str) -> int:
    """Whole days covered by a ``--since`` value (``7d``, ``24h``); hours round up to a day."""
    import re

    match = re.fullmatch(r"\s*(\d+)\s*([dh])\s*", since)
    if not match:
        raise typer.BadParameter(
            f"{since!r}: use a number of days or hours, e.g. 7d or 24h", param_hint="--since"
        )
    n, unit = int(match.group(1)), match.group(2)
    return max(1, n if unit == "d" else -(-n // 24))


def echo_table(rows: list[dict[str, str]], columns: list[str]) -> None:
    """Print cells already made safe for a terminal as aligned columns under upper-case names."""
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    typer.echo("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for r in rows:
        typer.echo("  ".join(r[c].ljust(widths[c]) for c in columns).rstrip())
