"""`enforcer devices list`: the enrolled devices, the revision each holds, and the stale ones."""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING

import typer

from enforcer.cli._common import actor, settings, store

if TYPE_CHECKING:
    from enforcer.store.devices import DeviceStatus

app = typer.Typer(no_args_is_help=True)


@app.command("list")
def list_cmd(
    stale: bool = typer.Option(
        False, "--stale", help="Only devices behind the newest revision for too long."
    ),
    search: str | None = typer.Option(
        None, "--search", "-q", help="Part of the hostname or device id."
    ),
    limit: int = typer.Option(100, "--limit", min=1, max=10_000),
    offset: int = typer.Option(0, "--offset", min=0),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Enrolled devices by hostname: OS, groups, last applied revision and time to enforce.

    A device is stale when it has lacked the newest revision for longer than
    ENFORCER_STALE_AFTER seconds (600 by default).
    """
    from enforcer.store.devices import count_devices, list_devices

    after = dt.timedelta(seconds=settings().stale_after)
    now = dt.datetime.now(dt.UTC)
    with store().connect() as conn:
        rows = list_devices(
            conn, stale_after=after, now=now, search=search, stale_only=stale,
            limit=limit, offset=offset,
        )  # fmt: skip
        total = count_devices(conn, stale_after=after, now=now, search=search, stale_only=stale)
    if as_json:
        from enforcer.web.devices import DeviceList, DevicePublic

        page = DeviceList(value=[DevicePublic.of(r) for r in rows], count=total)
        typer.echo(json.dumps(page.model_dump(mode="json", by_alias=True), indent=2))
        return
    if not rows:
        typer.echo("No stale devices." if stale else "No devices.")
        return
    header = ("HOSTNAME", "DEVICE ID", "OS", "GROUPS", "REVISION", "APPLIED", "TO ENFORCE", "")
    table = [header, *(_row(r, now) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
    if total > offset + len(rows):
        typer.echo(f"... {total - offset - len(rows)} more (--offset {offset + len(rows)})")


@app.command("approve")
def approve_cmd(device_id: str = typer.Argument(..., metavar="DEVICE_ID")) -> None:
    """Trust a device's hostname: from now on its traffic counts in Cloud Discovery under that
    hostname, together with uploaded logs of the same name (a device enrolled with a group's
    own secret is trusted already; others are the machine 'hostname (device ID)')."""
    from enforcer.store.trust import approve_device

    if not approve_device(store(), device_id, actor=actor()):
        typer.echo(f"error: no device {device_id!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"Approved {device_id}: its next events count under its hostname.")


def _row(status: DeviceStatus, now: dt.datetime) -> tuple[str, ...]:
    d = status.device
    os_text = f"{d.os} {d.os_version}".strip() or "-"
    took = status.time_to_enforce
    mark = ""
    if status.stale and status.behind_since is not None:
        mark = f"STALE (behind {_duration(now - status.behind_since)})"
    from enforcer.textsafe import cut

    return (
        cut(d.hostname, 40) or "-",
        cut(d.device_id, 40),
        cut(os_text, 30),
        cut(",".join(d.groups), 30) or "-",
        "-" if d.applied_revision is None else str(d.applied_revision),
        "-" if d.applied_at is None else f"{_duration(now - d.applied_at)} ago",
        "-" if took is None else _duration(took),
        mark,
    )


def _duration(span: dt.timedelta) -> str:
    """A short human duration: 850ms, 42s, 12m, 3h, 5d."""
    seconds = max(0.0, span.total_seconds())
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size:.0f}{unit}"
    return f"{seconds:.0f}s"
