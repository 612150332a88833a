"""`enforcer doctor`: check the installation and say what to fix, one line per check.

The settings, the store and the policy loader are imported when the command runs, not with the
command tree.
"""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from enforcer.errors import EnforcerError, PolicySetError

if TYPE_CHECKING:
    from enforcer.config import Settings

Result = tuple[bool | None, str]
"""(ok, message): ok None is a warning."""


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)


def _settings() -> tuple[Settings | None, Result]:
    from pydantic import ValidationError

    from enforcer.config import Settings

    try:
        return Settings(), (True, "settings load (ENFORCER_* environment / settings file)")
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return None, (False, f"settings are invalid: {problems}")


def _secrets(settings: Settings) -> Result:
    missing = [
        name
        for name, value in (
            ("ENFORCER_ADMIN_TOKEN", settings.admin_token),
            ("ENFORCER_ENROLL_SECRET", settings.enroll_secret),
        )
        if value is None or len(value.get_secret_value()) < 16
    ]
    if missing:
        return (
            None,
            f"{' and '.join(missing)} unset or shorter than 16 characters: `enforcer serve` will refuse to start (needed for the server only)",
        )
    return True, "admin token and enrolment secret are set"


def _store(settings: Settings) -> Result:
    from enforcer.store.db import make_engine
    from enforcer.store.migrate import code_head, current_revision

    try:
        engine = make_engine(settings.database_url, pool=False)
    except EnforcerError as exc:
        return False, str(exc)
    shown = engine.url.render_as_string(hide_password=True)
    try:
        current = current_revision(engine)
    except Exception as exc:  # any driver error is the message a person needs
        return (
            False,
            f"store {shown} is unreachable: {str(exc).splitlines()[0]} (check ENFORCER_DATABASE_URL)",
        )
    finally:
        engine.dispose()
    head = code_head()
    if current != head:
        return (
            None,
            f"store {shown} is at migration {current or 'none'}, the code wants {head}: any enforcer command migrates it on start",
        )
    return True, f"store {shown} is reachable and migrated ({head})"


def _clock(settings: Settings) -> Result:
    from enforcer.store.db import make_engine, server_now

    if not settings.database_url.startswith("postgres"):
        return True, "clock: the store is local (SQLite), no skew possible"
    try:
        engine = make_engine(settings.database_url, pool=False)
    except EnforcerError as exc:
        return None, f"clock: {exc}"
    try:
        server = server_now(engine)
    except Exception as exc:
        return None, f"clock: cannot read the database server's time: {str(exc).splitlines()[0]}"
    finally:
        engine.dispose()
    skew = abs((dt.datetime.now(dt.UTC) - server).total_seconds())
    if skew > 5:
        return (
            False,
            f"clock skew of {skew:.1f} s with the database server: fix NTP (expiry and long-poll timing depend on it)",
        )
    return True, f"clock within {skew:.2f} s of the database server"


def _policies(directory: Path) -> Result:
    from enforcer.pipeline.load import load_desired

    try:
        desired = load_desired(directory)
    except PolicySetError as exc:
        first = "; ".join(str(e) for e in exc.errors[:3])
        return (
            False,
            f"policy set {directory} has {len(exc.errors)} error(s): {first} (run `enforcer policy validate`)",
        )
    conflicts = (
        f", {len(desired.conflicts)} unresolved shared-domain conflict(s)"
        if any(c.resolution is None for c in desired.conflicts)
        else ""
    )
    return (
        True,
        f"policy set {directory} is valid: {len(desired.indicators)} desired indicators{conflicts}",
    )


def _port(listen: str, kinds: tuple[int, ...]) -> Result:
    host, _, port = listen.rpartition(":")
    for kind in kinds:
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((host or "127.0.0.1", int(port)))
            except OSError as exc:
                proto = "UDP" if kind == socket.SOCK_DGRAM else "TCP"
                return (
                    False,
                    f"{listen} ({proto}) cannot be bound: {exc.strerror}; stop what uses it or choose another port",
                )
    return True, f"{listen} is free"


def doctor(
    dns_listen: str | None = typer.Option(
        None, "--dns-listen", help="Check that the shim's DNS address is free."
    ),
    proxy_listen: str | None = typer.Option(
        None, "--proxy-listen", help="Check that the shim's proxy address is free."
    ),
    policies: Path | None = typer.Option(
        None, "--policies", help="Policy directory (default: ENFORCER_POLICY_DIR)."
    ),
) -> None:
    """Check settings, store, migrations, clock skew, policies and the shim's ports."""
    settings, result = _settings()
    results: list[Result] = [result]
    if settings is not None:
        checks: list[Callable[[], Result]] = [
            lambda: _secrets(settings),
            lambda: _store(settings),
            lambda: _clock(settings),
            lambda: _policies(policies or settings.policy_dir),
        ]
        results += [check() for check in checks]
    if dns_listen:
        results.append(_port(dns_listen, (socket.SOCK_DGRAM, socket.SOCK_STREAM)))
    if proxy_listen:
        results.append(_port(proxy_listen, (socket.SOCK_STREAM,)))
    for ok, message in results:
        mark = {True: "ok  ", False: "FAIL", None: "warn"}[ok]
        typer.echo(f"{mark}  {message}")
    failed = sum(1 for ok, _ in results if ok is False)
    if failed:
        typer.echo(f"\n{failed} check(s) failed.")
        raise typer.Exit(1)
