"""`enforcer audit list`: the audit log, newest first, filtered by time, actor and action;
`enforcer audit prune`: drop old changes by hand (the daemon does it after
``ENFORCER_AUDIT_RETENTION_DAYS``)."""

from __future__ import annotations

import json
from enum import StrEnum

import typer

from enforcer.cli._common import actor, store

app = typer.Typer(no_args_is_help=True)


class AuditFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


@app.command("list")
def list_cmd(
    since: str | None = typer.Option(
        None, "--since", help="30m, 24h, 7d back, or an ISO 8601 date or time (UTC)."
    ),
    actor: str | None = typer.Option(None, "--actor", help="Only this actor's changes."),
    action: str | None = typer.Option(
        None, "--action", help="An action (indicator.add) or its first part (indicator)."
    ),
    limit: int = typer.Option(100, "--limit", min=1, max=1_000_000),
    offset: int = typer.Option(0, "--offset", min=0),
    fmt: AuditFormat = typer.Option(AuditFormat.table, "--format"),
) -> None:
    """Who changed what, and when (policy applies, manual indicators, alerts, device groups,
    accounts, console edits), newest first."""
    from enforcer.store.audit import check_action_filter, list_audit, parse_since

    try:
        start = parse_since(since) if since else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None
    try:
        action = check_action_filter(action) if action else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--action") from None
    with store().connect() as conn:
        entries = list_audit(
            conn, since=start, actor=actor, action=action, limit=limit, offset=offset
        )
    if fmt is AuditFormat.json:
        typer.echo(json.dumps([e.as_json() for e in entries], indent=2))
        return
    if fmt is AuditFormat.csv:
        from enforcer.discovery.reports import to_csv

        rows = [e.as_row() for e in entries]
        typer.echo(to_csv(rows) if rows else "id,time,actor,action,target,details", nl=not rows)
        return
    if not entries:
        typer.echo("No changes recorded" + (" that match." if since or actor or action else "."))
        return
    from enforcer.textsafe import cut

    table = [("TIME (UTC)", "ACTOR", "ACTION", "TARGET", "DETAILS")]
    for e in entries:
        details = json.dumps(e.details, sort_keys=True, separators=(",", ":"))
        table.append(
            (f"{e.time:%Y-%m-%d %H:%M:%S}", cut(e.actor, 40), e.action, cut(e.target, 40),
             cut(details, 80))
        )  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        typer.echo(
            "  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)) + "  " + row[4]
        )
    if len(entries) == limit:
        typer.echo(f"... more may follow (--offset {offset + limit})")


@app.command("prune")
def prune_cmd(
    older_than: str = typer.Option(
        ..., "--older-than", help="Drop changes older than this: 400d, or an ISO 8601 date (UTC)."
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
) -> None:
    """Delete the changes recorded before a time; the pruning itself is recorded (who, how
    many, up to when)."""
    from enforcer.store.audit import parse_since, prune_audit

    try:
        cutoff = parse_since(older_than)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--older-than") from None
    if not yes and not typer.confirm(
        f"Delete every change recorded before {cutoff:%Y-%m-%d %H:%M:%S} UTC?"
    ):
        raise typer.Exit(1)
    deleted = prune_audit(store(), cutoff, actor=actor())
    typer.echo(f"Deleted {deleted:,} change(s) recorded before {cutoff:%Y-%m-%d %H:%M:%S} UTC.")
