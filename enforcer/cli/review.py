"""`enforcer review`: the review workflow from the store as last applied.

``queue`` lists the discovered apps nobody has decided about, most urgent first (users x
(1 + risk)); ``list`` the apps in review with their owner and due date, overdue first.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import typer

from enforcer.cli._common import days_of, echo_table, settings, store

app = typer.Typer(no_args_is_help=True)

QUEUE_COLUMNS = ["app", "category", "risk", "priority", "users", "transactions", "lastSeen"]
LIST_COLUMNS = ["app", "tag", "owner", "due", "state", "note", "origin"]


@app.command("queue")
def queue_cmd(
    since: str = typer.Option("30d", "--since", help="Discovery data to rank by: 7d, 30d, 24h."),
    limit: int = typer.Option(25, "--limit", min=0, help="Show this many (0: all)."),
    as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON."),
) -> None:
    """Discovered apps no policy entry decides and none puts in review, most urgent first."""
    from enforcer.discovery.reports import day_range, to_json
    from enforcer.discovery.review import review_queue
    from enforcer.pipeline.load import catalog_with_custom_apps

    first, last = day_range(days_of(since))
    catalog = catalog_with_custom_apps(settings().policy_dir)
    with store().connect() as conn:
        rows = review_queue(conn, catalog, first, last, limit=limit)
    if as_json:
        typer.echo(to_json(rows))
    elif not rows:
        typer.echo(f"No unreviewed app was discovered in the last {since.strip()}.")
    else:
        echo_table([_cells(r, QUEUE_COLUMNS) for r in rows], QUEUE_COLUMNS)
        typer.echo("PRIORITY: users x (1 + risk score); decide with an apps entry.", err=True)


@app.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON.")) -> None:
    """The apps in review: owner, due date, note, overdue first."""
    from enforcer.discovery.reports import to_json
    from enforcer.discovery.review import reviews_report
    from enforcer.pipeline.load import catalog_with_custom_apps

    catalog = catalog_with_custom_apps(settings().policy_dir)
    with store().connect() as conn:
        rows = reviews_report(conn, catalog, dt.datetime.now(dt.UTC).date())
    if as_json:
        typer.echo(to_json(rows))
    elif not rows:
        typer.echo("No app is in review.")
    else:
        shown = [{**r, "state": "OVERDUE" if r["overdue"] else "open"} for r in rows]
        echo_table([_cells(r, LIST_COLUMNS) for r in shown], LIST_COLUMNS)


def _cells(row: dict[str, Any], columns: list[str]) -> dict[str, str]:
    from enforcer.textsafe import cut

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        return f"{value:.1f}" if isinstance(value, float) else cut(str(value), 60)

    return {c: cell(row.get(c)) for c in columns}
