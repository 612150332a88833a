"""`enforcer sinks list | plan NAME | apply NAME | check [NAME...]`: push the store's indicators
to other engines, and check that they still hold them.

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
    from enforcer.pipeline.run import SinkCheck
    from enforcer.sinks.base import SinkChange, SinkPlan, SinkResult

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
    from enforcer.pipeline.run import plan_sink_for, read_sink_input
    from enforcer.sinks.base import SinkResult

    config = settings()
    engine = store()
    desired, revision = read_sink_input(engine)
    sink, the_plan = plan_sink_for(name, desired, revision, config, engine)
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


def _drift_line(change: SinkChange) -> str:
    from enforcer.plan.model import ChangeAction

    if change.action is ChangeAction.CREATE:
        detail = f"missing from the target (the store says {change.after})"
    elif change.action is ChangeAction.DELETE:
        detail = f"in the target ({change.before}), not in the store"
    else:
        detail = f"the target has {change.before}, the store says {change.after}"
    return f"  {change.action.value} {change.name:<40} {detail}"


def render_check(check: SinkCheck, limit: int | None = None) -> str:
    """One sink's check: in sync, or its drift one entry a line, then the repair if any."""
    where = f"{check.sink} -> {check.target}" if check.target else check.sink
    if check.error and check.repaired is None:
        return f"{where}: error: {check.error}"
    if not check.drift:
        return f"{where}: in sync with the store at revision {check.revision}"
    out = [
        f"{where}: DRIFT: {len(check.drift):,} entries differ from the store at revision "
        f"{check.revision}"
    ]
    shown = check.drift if limit is None else check.drift[:limit]
    out += (_drift_line(c) for c in shown)
    if len(shown) < len(check.drift):
        out.append(f"  ... and {len(check.drift) - len(shown):,} more")
    if check.repaired is not None:
        r = check.repaired
        out.append(
            f"  repaired: {r.created} added, {r.updated} changed, {r.deleted} destroyed"
            + (f"; error: {r.error}" if r.error else "")
        )
    return "\n".join(out)


@app.command("check")
def check_cmd(
    names: list[str] = typer.Argument(
        None, help=f"Sinks to check (default: ENFORCER_SINKS): {', '.join(SINKS)}."
    ),
    repair: bool = typer.Option(False, "--repair", help="Apply the plan that removes the drift."),
    as_json: bool = typer.Option(False, "--json", help="Print the checks as JSON."),
    limit: int | None = typer.Option(50, "--limit", min=0, help="Show at most N entries a sink."),
) -> None:
    """Compare each sink's live content (its file, the Defender tenant's indicators) with the
    store. Exit 0 when every sink is in sync, 2 on drift (repaired or not), 1 on an error."""
    from enforcer import logs
    from enforcer.pipeline.run import check_sinks

    config = settings()
    # The drift is printed below; the log lines (for the daemon) stay on stderr, errors only.
    logs.configure(config.log_format, "error")
    chosen = list(names or config.sinks)
    if not chosen:
        typer.echo("error: no sinks to check: name them or set ENFORCER_SINKS", err=True)
        raise typer.Exit(1)
    checks = check_sinks(config, store(), chosen, repair=repair)
    if as_json:
        typer.echo(json.dumps([_check_dict(c) for c in checks], indent=1))
    else:
        for check in checks:
            typer.echo(render_check(check, limit))
    if any(c.error for c in checks):
        raise typer.Exit(1)
    if any(c.drift for c in checks):
        raise typer.Exit(2)


def _check_dict(check: SinkCheck) -> dict[str, Any]:
    return {
        "sink": check.sink,
        "target": check.target,
        "revision": check.revision,
        "in_sync": check.in_sync,
        "drift": [
            {"action": c.action.value, "name": c.name, "target": c.before, "store": c.after}
            for c in check.drift
        ],
        "repaired": _result_dict(check.repaired) if check.repaired is not None else None,
        "error": check.error or None,
    }
