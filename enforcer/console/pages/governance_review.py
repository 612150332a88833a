"""Governance (``/console/governance``): the console's policy file, the plan it makes with its
impact, and the Apply button; also the page the governance forms answer with when they refuse."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from enforcer.console import governance as gov
from enforcer.console.session import Session
from enforcer.console.web import PREFIX, SignedIn, render, state
from enforcer.errors import PolicyError, PolicySetError
from enforcer.plan.render import render_text

router = APIRouter(prefix=PREFIX, include_in_schema=False)


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
) -> Response:
    """The governance page: console.yaml, the plan preview with its impact, Apply."""
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
    )
