"""`enforcer sinks list | plan NAME | apply NAME`: push the store's indicators to other engines.

`sink_plan_text` is also what `enforcer plan --sink NAME` prints.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import typer

from enforcer.cli._common import settings, store
from enforcer.sinks import SINKS

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from enforcer.config import Settings
    from enforcer.sinks.base import SinkPlan, SinkResult

app = typer.Typer(no_args_is_help=True)

NAME_ARGUMENT = typer.Argument(..., help=f"Sink name: {', '.join(SINKS)}.")


def render_sink_plan(plan: SinkPlan, limit: int | None = None) -> str:
    """Terraform-style text of a sink plan: one line per change, then the summary line."""
    from enforcer.plan.model import ChangeAction

    out = [
        f"Sink {plan.sink} -> {plan.target} at revision {plan.revision} ({plan.entries:,} entries)"
    ]
    out += (f"  {note}" for note in plan.notes)
    if not plan.has_changes:
        out += _left_out(plan, limit)
        out.append("\nNo changes. The target already matches the store.")
        return "\n".join(out)
    out.append("")
    shown = plan.changes if limit is None else plan.changes[:limit]
    for change in shown:
        if change.action is ChangeAction.UPDATE:
            detail = f"{change.before} -> {change.after}"
        else:
            detail = str(change.after if change.after is not None else change.before)
        line = f"  {change.action.value} {change.name:<40} {detail:<24}"
        out.append(f"{line} # {change.reason}" if change.reason else line.rstrip())
    if len(shown) < len(plan.changes):
        out.append(f"  ... and {len(plan.changes) - len(shown):,} more changes")
    out += _left_out(plan, limit)
    if not plan.changes:
        out.append(f"  The target is rewritten for revision {plan.revision} (no entry changes).")
    out.append("")
    out.append(plan.summary())
    return "\n".join(out)


def _left_out(plan: SinkPlan, limit: int | None) -> list[str]:
    """The `!` lines: names another owner holds, names the target has no room for."""
    out = [f"  ! {name:<40} skipped: {why}" for name, why in plan.skipped]
    shown = plan.overflow if limit is None else plan.overflow[:limit]
    out += (f"  ! {name:<40} {why}" for name, why in shown)
    if len(shown) < len(plan.overflow):
        out.append(f"  ! ... and {len(plan.overflow) - len(shown):,} more that do not fit")
    return out


def sink_plan_text(name: str, settings: Settings, engine: Engine, limit: int | None = None) -> str:
    """What applying sink `name` would change, as text (raises `SinkError` for a bad name or
    configuration; the Defender sink reads the tenant)."""
    from enforcer.pipeline.run import plan_sink

    return render_sink_plan(plan_sink(name, settings, engine), limit)


def _result_dict(result: SinkResult) -> dict[str, Any]:
    return {
        "sink": result.sink,
        "target": result.target,
        "revision": result.revision,
        "created": result.created,
        "updated": result.updated,
        "deleted": result.deleted,
        "written": result.written,
        "failed": [{"name": n, "reason": r} for n, r in result.failed],
        "error": result.error or None,
    }


def _plan_dict(plan: SinkPlan) -> dict[str, Any]:
    return {
        "sink": plan.sink,
        "target": plan.target,
        "revision": plan.revision,
        "entries": plan.entries,
        "summary": {a.name.lower(): n for a, n in plan.counts.items()},
        "changes": [
            {
                "action": c.action.value,
                "name": c.name,
                "before": c.before,
                "after": c.after,
                "reason": c.reason,
            }
            for c in plan.changes
        ],
        "skipped": [{"name": n, "reason": r} for n, r in plan.skipped],
        "overflow": [{"name": n, "reason": r} for n, r in plan.overflow],
        "notes": list(plan.notes),
    }


@app.command("list")
def list_cmd() -> None:
    """List the sinks, whether the daemon runs them (ENFORCER_SINKS) and where they write."""
    config = settings()
    targets = {
        "rpz": config.rpz_path,
        "hosts": config.hosts_path,
        "dnsmasq": config.dnsmasq_path,
        "defender": config.defender_tenant_url if config.defender_client_id else None,
    }
    for name in SINKS:
        enabled = "enabled " if name in config.sinks else "disabled"
        target = targets.get(name) or "(not configured)"
        typer.echo(f"{name:<10} {enabled} {target}")


@app.command("plan")
def plan_cmd(
    name: str = NAME_ARGUMENT,
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
    limit: int | None = typer.Option(None, "--limit", min=0, help="Show at most N changes."),
    detailed_exitcode: bool = typer.Option(
        False, "--detailed-exitcode", help="Exit 0 when nothing changes, 2 when something would."
    ),
) -> None:
    """Show what `enforcer sinks apply NAME` would change in the sink's target (a dry run)."""
    from enforcer.pipeline.run import plan_sink

    the_plan = plan_sink(name, settings(), store())
    if as_json:
        typer.echo(json.dumps(_plan_dict(the_plan), indent=1))
    else:
        typer.echo(render_sink_plan(the_plan, limit))
    if detailed_exitcode:
        raise typer.Exit(2 if the_plan.has_changes else 0)


@app.command("apply")
def apply_cmd(
    name: str = NAME_ARGUMENT,
    yes: bool = typer.Option(False, "--yes", "-y", help="Apply without asking."),
    limit: int | None = typer.Option(50, "--limit", min=0, help="Show at most N changes."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Bring the sink's target in line with the store now (the daemon does it at each new revision)."""
    from enforcer.pipeline.run import read_sink_input
    from enforcer.sinks.base import SinkResult, get_sink

    config = settings()
    sink = get_sink(name)
    desired, revision = read_sink_input(store())
    the_plan = sink.plan(desired, revision, config)
    if not as_json:
        typer.echo(render_sink_plan(the_plan, limit))
    if not the_plan.has_changes:
        if as_json:
            typer.echo(json.dumps(_result_dict(SinkResult(name, the_plan.target, revision))))
        return
    if not yes and not as_json:
        typer.confirm("Apply these changes?", abort=True)
    result = sink.apply(the_plan, config)
    if as_json:
        typer.echo(json.dumps(_result_dict(result), indent=1))
    else:
        typer.echo(
            f"Applied to {result.target}: {result.created} added, {result.updated} changed, "
            f"{result.deleted} destroyed."
        )
        for value, why in result.failed:
            typer.echo(f"error: {value}: refused by the target: {why}", err=True)
        if result.error:
            typer.echo(f"error: {result.error}", err=True)
    if not result.ok:
        raise typer.Exit(1)
