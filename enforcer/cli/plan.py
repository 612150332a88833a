"""`enforcer plan`, `enforcer apply`, `enforcer explain`: the policy-to-store workflow."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from enforcer.cli._common import POLICIES_OPTION, actor, policy_dir, settings, store
from enforcer.errors import EnforcerError, PolicySetError
from enforcer.models import ALL_DEVICES, normalize

if TYPE_CHECKING:
    from enforcer.decide.expand import DesiredState
    from enforcer.plan.model import Plan
    from enforcer.policy.evaluate import SanctionState, ScheduledEntry


class Format(StrEnum):
    text = "text"
    json = "json"
    markdown = "markdown"


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)
    app.command("apply")(apply)
    app.command("explain")(explain)


def plan(
    policies: Path | None = POLICIES_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
    fmt: Format = typer.Option(Format.text, "--format", help="text, json or markdown."),
    detailed_exitcode: bool = typer.Option(
        False,
        "--detailed-exitcode",
        help="Exit 0 when nothing changes, 2 when something would, 1 on error.",
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Save the plan to this file for `enforcer apply`."
    ),
    sink: str | None = typer.Option(
        None, "--sink", help="Preview what a sink (rpz, hosts, dnsmasq, defender) would change."
    ),
) -> None:
    """Show what applying the policy set would change in the store (a dry run)."""
    if as_json and fmt not in (Format.text, Format.json):
        raise typer.BadParameter(
            f"--json means --format json; it cannot go with --format {fmt.value}",
            param_hint="--json",
        )
    from enforcer.pipeline.run import expand_state, load_state, make_plan
    from enforcer.plan.render import RENDERERS, render_text

    if sink is not None:
        from enforcer.cli.sinks import sink_plan_text

        typer.echo(sink_plan_text(sink, settings(), store()))
        return
    try:
        state = load_state(policy_dir(policies))
        the_plan = make_plan(store(), expand_state(state))
    except EnforcerError:
        if detailed_exitcode:
            _render_error_and_exit()
        raise
    chosen = Format.json if as_json else fmt
    if chosen is Format.text:
        for line in _schedule_lines(state):
            typer.echo(line)
        typer.echo(render_text(the_plan, color=sys.stdout.isatty()))
    else:
        typer.echo(RENDERERS[chosen.value](the_plan))
    if out is not None:
        from enforcer.plan.planfile import write_plan_file
        from enforcer.store.plan_key import plan_key

        write_plan_file(out, the_plan, plan_key(store()))
        if chosen is Format.text:
            typer.echo(f"\nSaved the plan to {out}. Apply exactly it with: enforcer apply {out}")
    if detailed_exitcode:
        raise typer.Exit(2 if the_plan.has_changes else 0)


def _schedule_lines(state: SanctionState) -> list[str]:
    """The scheduled entries under the plan: the plan is for now, and these change it later."""
    if not state.scheduled:
        return []
    lines = ["Scheduled entries (the plan below is for now; each changes it at its next edge):"]
    for entry in state.scheduled:
        now = "in force" if entry.in_force else "not in force"
        lines.append(
            f"  {entry.section} {entry.label!r} [{entry.origin}]: schedule {entry.schedule!r}, "
            f"{now}, {_next_change(entry)}"
        )
    return [*lines, ""]


def _next_change(entry: ScheduledEntry) -> str:
    if entry.next_edge is None:
        return "no change within a week"
    import zoneinfo

    local = entry.next_edge.astimezone(zoneinfo.ZoneInfo(entry.timezone))
    verb = "ends" if entry.in_force else "starts"
    return (
        f"{verb} {local:%a %Y-%m-%d %H:%M} {entry.timezone} ({entry.next_edge:%Y-%m-%d %H:%M} UTC)"
    )


def _render_error_and_exit() -> None:
    exc = sys.exc_info()[1]
    if isinstance(exc, PolicySetError):
        for err in exc.errors:
            typer.echo(f"error: {err}", err=True)
    else:
        typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(1)


def _read_plan_file(path: Path, key: bytes) -> Plan:
    from enforcer.plan.planfile import read_plan_file

    try:
        return read_plan_file(path, key)
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(f"{path}: {exc}", param_hint="PLANFILE") from exc


def apply(
    planfile: Path | None = typer.Argument(None, help="A plan saved by `enforcer plan --out`."),
    policies: Path | None = POLICIES_OPTION,
    yes: bool = typer.Option(False, "--yes", "-y", help="Apply without asking."),
) -> None:
    """Apply the policy set (or a saved plan) to the store, in one transaction."""
    from enforcer.pipeline.run import apply as apply_plan
    from enforcer.pipeline.run import check_saved_plan, load_desired, make_plan
    from enforcer.plan.render import render_text
    from enforcer.store.plan_key import plan_key

    engine = store()
    desired = load_desired(policy_dir(policies))
    if planfile:
        # A saved plan is applied only if this store signed it and it is still exactly what
        # its policy set gives (a hand-edited change would otherwise be applied, then hidden).
        the_plan = _read_plan_file(planfile, plan_key(engine))
        check_saved_plan(engine, the_plan, desired)
    else:
        the_plan = make_plan(engine, desired)
    typer.echo(render_text(the_plan, color=sys.stdout.isatty()))
    if not the_plan.has_changes:
        # Still record tags and device groups (they are not part of the revision feed).
        apply_plan(engine, the_plan, actor=actor())
        return
    if not yes and not sys.stdin.isatty():
        typer.echo(
            "\nerror: not applied: nobody can confirm, because standard input is not a "
            "terminal; review the plan above and run `enforcer apply --yes` to apply it.",
            err=True,
        )
        raise typer.Exit(1)
    if not yes and not typer.confirm("\nApply these changes?", default=False):
        raise typer.Abort()
    revision = apply_plan(engine, the_plan, actor=actor())
    typer.echo(f"\nApplied. The store is at revision {revision}.")


def explain(
    domain: str = typer.Argument(..., help="A domain name, e.g. www.dropbox.com."),
    group: str = typer.Option(
        ALL_DEVICES, "--group", help="Explain for a device in this device group."
    ),
    policies: Path | None = POLICIES_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the explanation as JSON."),
) -> None:
    """Say whether a domain is blocked, by which indicator, app, policy file and line."""
    from enforcer.catalog import load_catalog
    from enforcer.decide.matcher import Matcher
    from enforcer.decide.scope import effective_indicators, match_entries
    from enforcer.store.by_name import covering

    try:
        name = normalize(domain)
    except (ValueError, UnicodeError) as exc:
        raise typer.BadParameter(str(exc), param_hint="DOMAIN") from exc
    scopes = {ALL_DEVICES, group}
    groups = {group} if group else set()
    with store().connect() as conn:
        stored = [s for s in covering(conn, name) if s.indicator.scope in scopes]
    if group and not any(s.indicator.scope == group for s in stored):
        _check_group(policy_dir(policies), group)
    effective = effective_indicators([s.indicator for s in stored], groups)
    verdict = Matcher(match_entries(effective.values(), groups)).verdict(name)
    decider = effective.get(verdict.indicator)
    deciding = [s for s in stored if s.indicator == decider]
    report: dict[str, Any] = {
        "domain": name,
        "group": group or None,
        "action": verdict.action.value if verdict.action else None,
        "blocked": verdict.blocked,
        "indicator": verdict.indicator or None,
        "indicators": [
            {
                "id": s.id,
                "source": s.source,
                "indicatorValue": s.indicator.value,
                "action": s.indicator.action.value,
                "scope": s.indicator.scope or None,
                "app": s.indicator.app_id or None,
                "decides": s in deciding,
            }
            for s in stored
        ],
        "apps": [],
        "policy": None,
    }
    catalog = load_catalog()
    for app in catalog.apps_for_domain(name):
        report["apps"].append(
            {"id": app.id, "name": app.name, "category": app.category, "risk": app.score}
        )
    report["policy"] = _policy_view(
        policy_dir(policies), name, [group, ALL_DEVICES] if group else [ALL_DEVICES]
    )
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    typer.echo(_explain_text(report))


def _check_group(directory: Path, group: str) -> None:
    """Refuse a group the policy set does not declare: explaining for it would silently answer
    for a device in no group. Nothing is checked while the policy set cannot be read."""
    from enforcer.policy.loader import read_policy_files

    try:
        declared = sorted({g.item.name for g in read_policy_files(directory).device_groups})
    except (OSError, EnforcerError):
        return
    if group not in declared:
        raise typer.BadParameter(
            f"unknown device group {group!r}: the policy set declares "
            f"{', '.join(declared) if declared else 'no device groups'}",
            param_hint="--group",
        )


def _policy_view(directory: Path, name: str, scopes: list[str]) -> dict[str, Any] | None:
    """What the policy files (as they are now) say about the name, if they load, and the
    scheduled entries that can change it, with when they next do."""
    from enforcer.pipeline.load import expand_state, load_state

    try:
        state = load_state(directory)
    except EnforcerError as exc:
        return {"error": str(exc)}
    view = _policy_view_of(state, expand_state(state), name, scopes)
    scheduled = [
        {
            "entry": f"{entry.section} {entry.label!r}",
            "schedule": entry.schedule,
            "timezone": entry.timezone,
            "in_force": entry.in_force,
            "next_change": entry.next_edge.isoformat() if entry.next_edge else None,
            "origin": str(entry.origin),
            "text": _next_change(entry),
        }
        for app in state.catalog.apps_for_domain(name)
        for entry in state.schedules_of(app)
    ]
    if scheduled:
        view["schedules"] = scheduled
    apps = state.catalog.apps_for_domain(name)
    reviews = [
        {
            "app": app.id,
            "tag": review.tag.value,
            "owner": review.owner,
            "due": review.due.isoformat(),
            "overdue": review.overdue(state.now),
            "note": review.note,
            "origin": str(review.origin),
        }
        for app in apps
        if (review := state.reviews.get(app.id)) is not None
    ]
    if reviews:
        view["reviews"] = reviews
    custom_tags = {
        app.id: sorted(state.custom_tags[app.id]) for app in apps if app.id in state.custom_tags
    }
    if custom_tags:
        view["custom_tags"] = custom_tags
    return view


def _policy_view_of(
    state: SanctionState, desired: DesiredState, name: str, scopes: list[str]
) -> dict[str, Any]:
    from enforcer.decide.expand import ancestors

    candidates = [name, *ancestors(name)]
    for value in candidates:
        for scope in scopes:
            ind = desired.indicators.get((scope, value))
            if ind is not None:
                origin, how = desired.origin_of(ind)
                return {
                    "indicatorValue": value,
                    "action": ind.action.value,
                    "scope": scope or None,
                    "app": ind.app_id or None,
                    "origin": str(origin) if origin else None,
                    "reason": how,
                }
    conflicts = [c for c in desired.conflicts if c.domain in candidates]
    if conflicts:
        c = conflicts[0]
        return {
            "conflict": f"{c.domain} would be {c.action.value} for app {c.app_id} ({c.origin}) "
            f"but also serves sanctioned {', '.join(c.sanctioned_apps)}"
        }
    # No indicator: a sanctioned app (or an entry without an action) may still decide the
    # name; say which entry tags the app that serves it, with its file and line.
    for app in state.catalog.apps_for_domain(name):
        for scope in scopes:
            decision = state.decisions.get((app.id, scope))
            if decision is not None:
                return {
                    "app": app.id,
                    "tag": decision.tag.value,
                    "scope": scope or None,
                    "origin": str(decision.origin),
                    "reason": decision.reason,
                }
    return {}


def _explain_text(report: dict[str, Any]) -> str:
    lines = []
    name = report["domain"]
    if report["action"] is None:
        lines.append(f"{name}: not governed (no indicator in the store matches it or a parent).")
    else:
        verb = "BLOCKED" if report["blocked"] else report["action"].upper()
        lines.append(f"{name}: {verb} by indicator {report['indicator']} ({report['action']}).")
    for item in report["indicators"]:
        mark = "*" if item["decides"] else " "
        lines.append(
            f"  {mark} {item['indicatorValue']} {item['action']} [{item['source']}, "
            f"{item['scope'] or 'all devices'}] app={item['app'] or '-'} id={item['id']}"
        )
    for app in report["apps"]:
        lines.append(
            f"  app: {app['name']} ({app['id']}), {app['category']}, risk {app['risk']:.1f}/10"
        )
    policy = report["policy"] or {}
    if "error" in policy:
        lines.append(f"  policy: the policy set does not load: {policy['error']}")
    elif "conflict" in policy:
        lines.append(f"  policy: conflict: {policy['conflict']}")
    elif "tag" in policy:
        lines.append(
            f"  policy: {policy['app']} is {policy['tag']} — {policy['reason']} at "
            f"{policy['origin']} (no indicator: it is not blocked)"
        )
    elif "indicatorValue" in policy:
        lines.append(
            f"  policy: {policy['indicatorValue']} {policy['action']} — {policy['reason']}"
            + (f" at {policy['origin']}" if policy.get("origin") else "")
        )
        if policy["action"] != report["action"] or policy["indicatorValue"] != report["indicator"]:
            lines.append("  note: the store differs from the policy files; run `enforcer plan`.")
    else:
        lines.append("  policy: no policy entry covers this name.")
    for entry in policy.get("schedules", []):
        now = "in force" if entry["in_force"] else "not in force"
        lines.append(
            f"  schedule: {entry['entry']} at {entry['origin']} follows {entry['schedule']!r}: "
            f"{now} now, {entry['text']}"
        )
    for review in policy.get("reviews", []):
        meanwhile = (
            "the rules decide it meanwhile"
            if review["tag"] == "in-review"
            else f"it stays {review['tag']} meanwhile"
        )
        overdue = " (OVERDUE)" if review["overdue"] else ""
        lines.append(
            f"  review: {review['app']} is in review by {review['owner']}, due {review['due']}"
            f"{overdue} at {review['origin']}; {meanwhile}"
        )
    for app_id, tags in policy.get("custom_tags", {}).items():
        lines.append(f"  custom tags: {app_id}: {', '.join(tags)}")
    return "\n".join(lines)
