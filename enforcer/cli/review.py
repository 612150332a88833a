"""`enforcer review`: the review workflow from the store as last applied.

``queue`` lists the discovered apps nobody has decided about, most urgent first (users x
(1 + risk)); ``list`` the apps in review with their owner and due date, overdue first.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import typer

from enforcer.cli._common import settings, store

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

    first, last = day_range(_days(since))
    catalog = catalog_with_custom_apps(settings().policy_dir)
    with store().connect() as conn:
        rows = review_queue(conn, catalog, first, last, limit=limit)
    if as_json:
        typer.echo(to_json(rows))
    elif not rows:
        typer.echo(f"No unreviewed app was discovered in the last {since.strip()}.")
    else:
        _table(rows, QUEUE_COLUMNS)
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
        _table([{**r, "state": "OVERDUE" if r["overdue"] else "open"} for r in rows], LIST_COLUMNS)


def _days(since: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([dh])\s*", since)
    if not match:
        raise typer.BadParameter(
            f"{since!r}: use a number of days or hours, e.g. 7d or 24h", param_hint="--since"
        )
    n, unit = int(match.group(1)), match.group(2)
    return max(1, n if unit == "d" else -(-n // 24))


def _table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    from enforcer.textsafe import cut

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        return f"{value:.1f}" if isinstance(value, float) else cut(str(value), 60)

    shown = [{c: cell(r.get(c)) for c in columns} for r in rows]
    widths = {c: max(len(c), *(len(r[c]) for r in shown)) for c in columns}
    typer.echo("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for r in shown:
        typer.echo("  ".join(r[c].ljust(widths[c]) for c in columns).rstrip())
