"""Renderers of a `Plan`: text (Terraform-style), JSON and Markdown. The plan never renders itself."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from itertools import groupby

from enforcer.plan.model import AppState, Change, ChangeAction, ConflictNote, ExpiredEntry, Plan
from enforcer.plan.planfile import plan_to_dict


def _scope(scope: str) -> str:
    return scope if scope else "all devices"


def _line(change: Change) -> str:
    ind = change.indicator
    if change.action is ChangeAction.UPDATE and change.before and change.after:
        diffs = _diff_fields(change)
        return f"  ~ {ind.value:<40} {_scope(ind.scope):<14} {diffs}"
    detail = f"{ind.action.value:<8}{ind.severity.value:<14}"
    if ind.expiration:
        detail += f"expires {ind.expiration:%Y-%m-%d %H:%M}Z"
    return f"  {change.action.value} {ind.value:<40} {_scope(ind.scope):<14} {detail}".rstrip()


def _diff_fields(change: Change) -> str:
    assert change.before and change.after
    parts = []
    for name in (
        "action",
        "severity",
        "title",
        "description",
        "generate_alert",
        "expiration",
        "app_id",
    ):
        old, new = getattr(change.before, name), getattr(change.after, name)
        if old != new:
            parts.append(f"{name}: {_short(old)} -> {_short(new)}")
    return "; ".join(parts)


def _short(value: object) -> str:
    text = getattr(value, "value", value)
    text = str(text)
    return text if len(text) <= 40 else text[:37] + "..."


def _groups(plan: Plan) -> Iterable[tuple[str, list[Change]]]:
    for app_id, changes in groupby(plan.changes, key=lambda c: c.app_id):
        yield app_id, list(changes)


def _heading(app_id: str, changes: list[Change]) -> str:
    reasons = sorted({c.reason for c in changes if c.reason})
    name = app_id or "(policy allow entries)"
    return f"  # {name}: " + " | ".join(reasons) if reasons else f"  # {name}"


def _impact(figures: Mapping[str, int]) -> str:
    if not figures.get("requests"):
        return "  #   impact: no traffic to this app in the last 7 days of discovery data"
    return (
        f"  #   impact: in the last 7 days this would have affected {figures['requests']:,} requests "
        f"by {figures['users']:,} users on {figures['devices']:,} devices"
    )


def _conflict(note: ConflictNote) -> str:
    shared = ", ".join(note.sanctioned_apps)
    if note.resolution:
        how = f"resolved: {note.resolution} ({note.resolved_at})"
    else:
        how = "NOT enforced until a `conflicts` entry resolves it"
    return (
        f"  ! {note.domain} ({_scope(note.scope)}): {note.action} wanted by app {note.app_id} "
        f"({note.origin}) but it also serves sanctioned {shared}; {how}"
    )


def _expired(entry: ExpiredEntry) -> str:
    return f"  ~ {entry.kind} {entry.subject} expired {entry.expires} ({entry.origin})"


def _overdue(app: AppState) -> str:
    assert app.review is not None
    return (
        f"  ! {app.app_id}: review by {app.review.owner} was due {app.review.due} "
        f"({app.review.origin})"
    )


def render_text(plan: Plan, *, color: bool = False) -> str:
    """Terraform-style human view, grouped by app, ending with the summary line."""
    paint = _painter(color)
    out: list[str] = []
    if plan.has_changes:
        out.append(f"Enforcer will perform these actions (store at revision {plan.base_revision}):")
        for app_id, changes in _groups(plan):
            out.append("")
            out.append(paint(_heading(app_id, changes), "bold"))
            if app_id in plan.impact:
                out.append(paint(_impact(plan.impact[app_id]), "warn"))
            out.extend(paint(_line(c), c.action.name) for c in changes)
    else:
        out.append("No changes. The store matches the policy set.")
    if plan.conflicts:
        out.append("")
        out.append(paint("Shared-domain conflicts:", "warn"))
        out.extend(paint(_conflict(c), "warn") for c in plan.conflicts)
    if plan.expired:
        out.append("")
        out.append(paint("Expired policy entries (no longer applied; remove them):", "warn"))
        out.extend(paint(_expired(e), "warn") for e in plan.expired)
    overdue = plan.overdue_reviews()
    if overdue:
        out.append("")
        out.append(
            paint(
                "Overdue reviews (nothing changes by itself: decide, then update the entry):",
                "warn",
            )
        )
        out.extend(paint(_overdue(a), "warn") for a in overdue)
    if plan.collapsed:
        out.append("")
        out.append(
            f"{plan.collapsed} indicator(s) left out: a parent domain with the same action covers them."
        )
    out.append("")
    out.append(plan.summary())
    return "\n".join(out)


def _painter(color: bool) -> Callable[[str, str], str]:
    codes = {"CREATE": "32", "UPDATE": "33", "DELETE": "31", "warn": "33", "bold": "1"}

    def paint(text: str, kind: str) -> str:
        if not color or kind not in codes:
            return text
        return f"\x1b[{codes[kind]}m{text}\x1b[0m"

    return paint


def render_json(plan: Plan) -> str:
    return json.dumps(plan_to_dict(plan), indent=2)


def render_markdown(plan: Plan) -> str:
    """For a pull-request comment (`enforcer plan --format markdown`)."""
    out = ["### Enforcer plan", "", f"**{plan.summary()}**", ""]
    if plan.has_changes:
        out += ["| | Domain | Scope | Action | App | Why |", "|---|---|---|---|---|---|"]
        for change in plan.changes:
            ind = change.indicator
            out.append(
                f"| `{change.action.value}` | `{ind.value}` | {_scope(ind.scope)} | "
                f"{ind.action.value} | {ind.app_id or '-'} | {change.reason} |"
            )
    if plan.impact:
        out += ["", "#### Impact (last 7 days of discovery data)", "", "| App | Requests | Users | Devices |",
                "|---|---|---|---|"]  # fmt: skip
        out += [
            f"| {a} | {v['requests']:,} | {v['users']:,} | {v['devices']:,} |"
            for a, v in plan.impact.items()
        ]
    if plan.conflicts:
        out += ["", "#### Shared-domain conflicts", ""]
        out += [f"- {_conflict(c).strip()[2:]}" for c in plan.conflicts]
    if plan.expired:
        out += ["", "#### Expired policy entries (no longer applied)", ""]
        out += [f"- {_expired(e).strip()[2:]}" for e in plan.expired]
    if plan.overdue_reviews():
        out += ["", "#### Overdue reviews", ""]
        out += [f"- {_overdue(a).strip()[2:]}" for a in plan.overdue_reviews()]
    return "\n".join(out) + "\n"


RENDERERS: dict[str, Callable[[Plan], str]] = {
    "text": render_text,
    "json": render_json,
    "markdown": render_markdown,
}
