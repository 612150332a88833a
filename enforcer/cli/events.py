"""`enforcer events list`: the raw network events devices reported, searched, newest first.

The query log of a DNS blocker, Defender's DeviceNetworkEvents: which device, user and process
reached which name and address, and what the shim did. The store and the wire shapes are
imported when the command runs (`enforcer --help` must not pay for them).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import typer

from enforcer.cli._common import store

if TYPE_CHECKING:
    from enforcer.wire.events import StoredEvent

app = typer.Typer(no_args_is_help=True)

TIME_HELP = "a duration back from now (30m, 24h, 7d, 2w) or an ISO 8601 time (UTC if no zone)"
OPTION_OF = {
    "device": "--device",
    "user": "--user",
    "process": "--process",
    "domain": "--domain",
    "action": "--action",
    "since": "--since",
    "until": "--until",
}


@app.command("list")
def list_cmd(
    device: str | None = typer.Option(None, "--device", help="Hostname (any case) or device id."),
    user: str | None = typer.Option(None, "--user", help="OS user that made the connection."),
    process: str | None = typer.Option(
        None, "--process", help="Executable name (firefox), or its path (with a /)."
    ),
    domain: str | None = typer.Option(
        None, "--domain", help="A name: matches it and its subdomains."
    ),
    action: str | None = typer.Option(
        None, "--action", help="allowed, blocked, warned, bypassed or audited."
    ),
    since: str | None = typer.Option(None, "--since", help=f"Events from: {TIME_HELP}."),
    until: str | None = typer.Option(None, "--until", help=f"Events before: {TIME_HELP}."),
    limit: int = typer.Option(100, "--limit", min=1, max=100_000, help="Most events shown."),
    count: bool = typer.Option(
        False, "--count", help="Print how many events match (reads them all) instead."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="One JSON object per line (the API's event shape)."
    ),
) -> None:
    """Network events that match every filter given, newest first."""
    from enforcer.store.event_search import count_matching, search_events
    from enforcer.web.events import SearchFieldError, event_search, stored_event

    try:
        search = event_search(
            now=dt.datetime.now(dt.UTC),
            device=device,
            user=user,
            process=process,
            domain=domain,
            action=action,
            since=since,
            until=until,
        )
    except SearchFieldError as exc:
        raise typer.BadParameter(exc.message, param_hint=OPTION_OF[exc.field]) from None
    with store().connect() as conn:
        if count:
            typer.echo(count_matching(conn, search))
            return
        page = search_events(conn, search, limit=limit)
    events = [stored_event(found) for found in page.events]
    if as_json:
        for event in events:
            typer.echo(event.model_dump_json(by_alias=True))
    elif events:
        _table(events)
    else:
        typer.echo("No events match.", err=True)
    if page.more:
        # On stderr, so that --json output stays one object per line.
        typer.echo(
            f"Showing the newest {limit} events; more match "
            "(raise --limit, or narrow with --since/--until or a filter).",
            err=True,
        )


COLUMNS = ("TIME (UTC)", "DEVICE", "USER", "PROCESS", "DOMAIN", "DESTINATION", "ACTION", "UP/DOWN")


def _table(events: list[StoredEvent]) -> None:
    rows = [_row(event) for event in events]
    widths = [max(len(row[i]) for row in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
    header = (*COLUMNS, "INDICATOR")
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        typer.echo("  ".join([*cells, row[-1]]).rstrip())


def _row(event: StoredEvent) -> tuple[str, ...]:
    dest = event.dest_ip if ":" not in event.dest_ip else f"[{event.dest_ip}]"
    return (
        event.time.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S"),
        _cut(event.hostname or event.device_id, 28),
        _cut(event.user, 16) or "-",
        _cut(event.process_name, 16) or "-",
        _cut(event.domain, 40) or "-",
        f"{dest}:{event.dest_port}" if event.dest_ip else "-",
        event.action.value,
        f"{_size(event.bytes_up)}/{_size(event.bytes_down)}",
        _cut(event.indicator, 60) or "-",
    )


def _cut(text: str, width: int) -> str:
    from enforcer.textsafe import cut

    return cut(text, width)


def _size(count: int) -> str:
    for unit in ("", "K", "M", "G"):
        if count < 1000:
            return f"{count}{unit}"
        count //= 1000
    return f"{count}T"
