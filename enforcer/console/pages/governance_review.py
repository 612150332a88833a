"""Governance (``/console/governance``): the console's policy file, the plan it makes with its
impact, and the Apply button; the review workflow (the queue of discovered apps nobody decided
about, the apps in review with overdue ones marked, the custom tags) and the schedules with
their next edge; also the page the governance forms answer with when they refuse.

A tag change for an app that a git policy file tags is not written to console.yaml (the set
would hold two entries for the app): the page shows the change as a patch of that file, to
download, or to commit on a new branch when the policy directory is a git checkout
(`enforcer.console.git_policy`).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from enforcer.console import git_policy
from enforcer.console import governance as gov
from enforcer.console.pages.cached import apps_rows
from enforcer.console.session import Session
from enforcer.console.web import PREFIX, CheckedForm, SignedIn, render, state
from enforcer.discovery.reports import day_range
from enforcer.discovery.review import (
    custom_tags_report,
    rank_queue,
    reviews_report,
    undecided_filters,
)
from enforcer.errors import PolicyError, PolicySetError
from enforcer.models import Tag
from enforcer.plan.render import render_text
from enforcer.policy.loader import read_policy_files
from enforcer.policy.schedule import in_force, next_edge
from enforcer.textsafe import download_name

router = APIRouter(prefix=PREFIX, include_in_schema=False)

QUEUE_DAYS = 30
"""Days of discovery data the review queue ranks by."""
QUEUE_LENGTH = 15


@router.get("/governance")
def governance(request: Request, session: SignedIn) -> Response:
    return governance_page(request, session, app_id=request.query_params.get("app", ""))


def governance_page(
    request: Request,
    session: Session,
    *,
    status: int = 200,
    app_id: str = "",
    rejected: list[PolicyError] | None = None,
    notice: str = "",
    git: dict[str, Any] | None = None,
) -> Response:
    """The governance page: console.yaml, the plan preview with its impact, Apply, the review
    workflow and the schedules; `git` shows a change to a git policy file instead."""
    console = state(request)
    policy_dir = console.policy_dir
    errors: list[PolicyError] = []
    plan = None
    try:
        plan = gov.preview(console.engine, policy_dir)
    except PolicySetError as exc:
        errors = list(exc.errors)
    snippet = ""
    if app_id:
        snippet = gov.snippet(gov.change_for(policy_dir, app_id), app_id)
    return render(
        request,
        "governance.html",
        session,
        status=status,
        section="governance",
        app_id=app_id,
        app=console.catalog().apps.get(app_id),
        console_yaml=gov.current(policy_dir),
        plan=plan,
        plan_text=render_text(plan) if plan else "",
        fingerprint=gov.fingerprint(plan) if plan else "",
        impact=sorted(plan.impact.items()) if plan else [],
        errors=errors,
        rejected=rejected or [],
        snippet=snippet,
        notice=notice,
        applied=request.query_params.get("applied", ""),
        git=git,
        schedules=_schedules(request),
        queue_days=QUEUE_DAYS,
        **_review_workflow(request),
    )


def _review_workflow(request: Request) -> dict[str, Any]:
    """The review queue, the apps in review and the custom tags, as last applied."""
    console = state(request)
    first, last = day_range(QUEUE_DAYS)
    catalog = console.catalog()
    discovered = apps_rows(request, first, last)  # the apps page's cached report
    with console.engine.connect() as conn:
        decided, in_review = undecided_filters(conn)
        return {
            "queue": rank_queue(discovered, decided, in_review, QUEUE_LENGTH),
            "reviews": reviews_report(conn, catalog, dt.datetime.now(dt.UTC).date()),
            "custom_tags": custom_tags_report(conn),
        }


def _schedules(request: Request) -> list[dict[str, Any]]:
    """Each schedule of the policy set (staged edit included): in force now, and its next edge."""
    now = dt.datetime.now(dt.UTC)
    with gov.effective_dir(state(request).policy_dir) as directory:
        policy = read_policy_files(directory)
    users: dict[str, list[str]] = {}
    for section in (policy.apps, policy.rules, policy.exceptions):
        for entry in section:
            item = entry.item
            if item.schedule:
                label = str(getattr(item, "name", None) or getattr(item, "app", ""))
                users.setdefault(item.schedule, []).append(label)
    rows = []
    for located in policy.schedules:
        schedule = located.item
        edge = next_edge(schedule, now)
        rows.append(
            {
                "name": schedule.name,
                "timezone": schedule.timezone,
                "in_force": in_force(schedule, now),
                "next_edge": edge.isoformat(timespec="minutes") if edge else "",
                "next_edge_local": (
                    edge.astimezone(_zone(schedule.timezone)).strftime("%a %Y-%m-%d %H:%M")
                    if edge
                    else ""
                ),
                "used_by": users.get(schedule.name, []),
                "origin": str(located.at),
            }
        )
    return rows


def _zone(name: str) -> dt.tzinfo:
    return zoneinfo.ZoneInfo(name)


# --- a tag set in git: the patch, or a commit on a branch ----------------------------------

REVIEW_FIELDS = ("owner", "due", "note")


def tag_change(app_id: str, fields: Mapping[str, Any], actor: str) -> git_policy.TagChange | None:
    """The tag change a form asks for (None for an empty or unknown tag)."""
    try:
        tag = Tag(str(fields.get("tag", "")))
    except ValueError:
        return None
    review = {k: str(fields.get(k, "")).strip() for k in REVIEW_FIELDS}
    return git_policy.TagChange(app_id, tag, actor=actor, **review)


def tagged_in_git(
    request: Request, session: Session, app_id: str, fields: Mapping[str, Any]
) -> Response | None:
    """When a git policy file tags `app_id`, the page offering the change as a patch of that
    file (or a branch); None when the console may write its own entry."""
    change = tag_change(app_id, fields, session.account)
    if change is None:
        return None
    policy_dir = state(request).policy_dir
    try:
        found = git_policy.change_for(policy_dir, change, now=dt.datetime.now(dt.UTC))
    except git_policy.GitPolicyError:
        return None
    if found is None:
        return None
    problems = gov.check_replaced(policy_dir, found.path, found.after)
    if problems:  # e.g. an in-review tag without an owner: the file would not load
        return governance_page(request, session, status=409, app_id=app_id, rejected=problems)
    return governance_page(
        request, session, app_id=app_id, git=_git_context(request, change, found)
    )


def _git_context(
    request: Request, change: git_policy.TagChange, found: git_policy.GitChange, **extra: str
) -> dict[str, Any]:
    query = {"app": change.app_id, "tag": change.tag.value, "owner": change.owner,
             "due": change.due, "note": change.note}  # fmt: skip
    return {
        "change": change,
        "at": str(found.at),
        "patch": found.patch(),
        "can_commit": git_policy.can_commit(state(request).policy_dir),
        "query": query,
        **extra,
    }


@router.get("/governance/git-patch")
def git_patch(request: Request, session: SignedIn) -> Response:
    """The patch of the git policy file that makes the tag change in the query."""
    params = request.query_params
    change = tag_change(params.get("app", ""), params, session.account)
    found = (
        git_policy.change_for(state(request).policy_dir, change, now=dt.datetime.now(dt.UTC))
        if change
        else None
    )
    if change is None or found is None:
        return governance_page(
            request, session, status=404, notice="No git policy file tags that app."
        )
    name = download_name(f"enforcer-{change.app_id}-{change.tag.value}.patch")
    return Response(
        found.patch(),
        media_type="text/x-diff; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )


@router.post("/governance/git-branch")
def git_branch(request: Request, session: SignedIn, form: CheckedForm) -> Response:
    """Commit the tag change to the git policy file on a new branch (the checkout untouched)."""
    app_id = str(form.get("app", ""))
    change = tag_change(app_id, form, session.account)
    now = dt.datetime.now(dt.UTC)
    policy_dir = state(request).policy_dir
    found = git_policy.change_for(policy_dir, change, now=now) if change else None
    if change is None or found is None:
        return governance_page(
            request, session, status=404, notice="No git policy file tags that app."
        )
    problems = gov.check_replaced(policy_dir, found.path, found.after)
    if problems:
        return governance_page(request, session, status=409, app_id=app_id, rejected=problems)
    try:
        branch = git_policy.commit_on_branch(policy_dir, found, change, now=now)
    except git_policy.GitPolicyError as exc:
        context = _git_context(request, change, found, error=str(exc))
        return governance_page(request, session, status=409, app_id=app_id, git=context)
    context = _git_context(request, change, found, branch=branch)
    return governance_page(request, session, app_id=app_id, git=context)
