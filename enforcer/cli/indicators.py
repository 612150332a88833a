"""`enforcer indicators list | export | add | delete`: the store's indicators."""

from __future__ import annotations

import csv
import datetime as dt
import json
import sys
from enum import StrEnum
from typing import TYPE_CHECKING

import typer

from enforcer.cli._common import actor, store

if TYPE_CHECKING:
    from enforcer.store.by_name import StoredIndicator

app = typer.Typer(no_args_is_help=True)


class ExportFormat(StrEnum):
    json = "json"
    csv = "csv"


class ManualAction(StrEnum):
    block = "block"
    warn = "warn"
    audit = "audit"
    alert = "alert"
    allow = "allow"


class SeverityWord(StrEnum):
    informational = "informational"
    low = "low"
    medium = "medium"
    high = "high"


def _as_dict(s: StoredIndicator) -> dict[str, object]:
    from enforcer.wire.indicators import to_defender

    data: dict[str, object] = {"id": s.id, "source": s.source}
    data.update(to_defender(s.indicator))
    data["createdBy"] = s.created_by
    data["creationTimeDateTimeUtc"] = s.created_at.isoformat()
    data["lastUpdateTime"] = s.updated_at.isoformat()
    return data


@app.command("list")
def list_cmd(
    source: str | None = typer.Option(None, "--source", help="policy or manual."),
    app_id: str | None = typer.Option(None, "--app", help="Only indicators of this app."),
    contains: str | None = typer.Option(None, "--contains", help="Value contains this text."),
    limit: int = typer.Option(100, "--limit", min=1, max=10_000),
    offset: int = typer.Option(0, "--offset", min=0),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List indicators (paged; see `export` for all of them)."""
    from enforcer.store.lookup import count_indicators, list_indicators

    with store().connect() as conn:
        rows = list_indicators(
            conn, source=source, app_id=app_id, contains=contains, limit=limit, offset=offset
        )
        total = count_indicators(conn, source=source, app_id=app_id, contains=contains)
    if as_json:
        typer.echo(json.dumps({"total": total, "value": [_as_dict(r) for r in rows]}, indent=2))
        return
    from enforcer.textsafe import cut

    typer.echo(f"{'ID':>7} {'VALUE':<40} {'ACTION':<8} {'SCOPE':<12} {'SOURCE':<7} APP")
    for r in rows:
        ind = r.indicator
        typer.echo(
            f"{r.id:>7} {cut(ind.value, 40):<40} {ind.action.value:<8} {ind.scope or 'all':<12} "
            f"{r.source:<7} {cut(ind.app_id or '-', 40)}"
        )
    typer.echo(f"\n{len(rows)} of {total} indicators (offset {offset})")


@app.command("export")
def export(fmt: ExportFormat = typer.Option(ExportFormat.json, "--format")) -> None:
    """Write every indicator to stdout as JSON lines or CSV (Defender field names)."""
    from enforcer.store.lookup import iter_indicators

    engine = store()
    with engine.connect() as conn:
        rows = iter_indicators(conn)
        if fmt is ExportFormat.json:
            for r in rows:
                sys.stdout.write(json.dumps(_as_dict(r)) + "\n")
            return
        from enforcer.textsafe import csv_cell

        writer: csv.DictWriter[str] | None = None
        for r in rows:
            data = _as_dict(r)
            data["rbacGroupNames"] = ";".join(data["rbacGroupNames"])  # type: ignore[arg-type]
            if writer is None:
                writer = csv.DictWriter(sys.stdout, fieldnames=list(data))
                writer.writeheader()
            writer.writerow({k: csv_cell(v) for k, v in data.items()})


@app.command("add")
def add(
    value: str = typer.Argument(..., help="The domain to block, warn on, audit or allow."),
    action: ManualAction = typer.Option(ManualAction.block, "--action", help="What to do."),
    severity: SeverityWord = typer.Option(SeverityWord.medium, "--severity"),
    scope: str = typer.Option("", "--group", help="Device group (default: all devices)."),
    title: str = typer.Option("Manual indicator", "--title"),
    description: str = typer.Option("", "--description"),
    expires_days: float | None = typer.Option(None, "--expires-in-days", min=0.001),
    generate_alert: bool = typer.Option(False, "--alert/--no-alert"),
) -> None:
    """Add a manual indicator (reconciliation never touches manual indicators)."""
    from enforcer.models import Action, Indicator, Severity, normalize
    from enforcer.store.manual import add_manual

    try:
        ind = Indicator(
            value=normalize(value),
            action=Action.from_policy(action.value),
            severity=Severity.parse(severity.value),
            scope=scope,
            title=title,
            description=description,
            generate_alert=generate_alert,
            expiration=dt.datetime.now(dt.UTC) + dt.timedelta(days=expires_days)
            if expires_days
            else None,
        )
    except (ValueError, KeyError, UnicodeError) as exc:
        raise typer.BadParameter(f"{exc}") from exc
    new_id, revision = add_manual(store(), ind, actor=actor())
    typer.echo(
        f"Added manual indicator {new_id} for {ind.value}; the store is at revision {revision}."
    )


@app.command("delete")
def delete(indicator_id: int = typer.Argument(..., help="Id of a manual indicator.")) -> None:
    """Delete a manual indicator (policy indicators follow the policy files)."""
    from enforcer.store.lookup import UnknownIndicatorError, get_indicator
    from enforcer.store.manual import delete_manual

    engine = store()
    try:
        with engine.connect() as conn:
            found = get_indicator(conn, indicator_id)
    except UnknownIndicatorError:
        found = None
    if found is not None and found.source != "manual":
        where = f" for app {found.indicator.app_id}" if found.indicator.app_id else ""
        raise typer.BadParameter(
            f"indicator {indicator_id} ({found.indicator.value}{where}) is managed by policy: "
            "change the policy files and run `enforcer plan` / `enforcer apply` (or add an allow "
            "entry), not the store",
            param_hint="INDICATOR_ID",
        )
    revision = delete_manual(engine, indicator_id, actor=actor())
    typer.echo(f"Deleted indicator {indicator_id}; the store is at revision {revision}.")
