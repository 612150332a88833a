"""The console's forms: sign in and out, governance (tag, custom app, apply, downloads of the
console's policy file and patch), acknowledging alerts, adding and removing manual indicators.
Every POST needs the session's CSRF token and answers with a redirect (or, when it refuses, the
page to fix the form on). Every change needs the admin role (`CheckedForm`; an analyst gets
403) and is recorded in the audit log as the signed-in account.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from enforcer.catalog import App
from enforcer.console import governance as gov
from enforcer.console.pages.governance_review import (
    REVIEW_FIELDS,
    governance_page,
    tagged_in_git,
)
from enforcer.console.session import (
    account_for_login,
    clear_cookie,
    new_session,
    read_session,
    set_cookie,
    sign_out,
)
from enforcer.console.web import PREFIX, CheckedForm, SessionForm, SignedIn, missing, render, state
from enforcer.errors import PolicySetError, StalePlanError
from enforcer.models import Action, Tag
from enforcer.pipeline.run import apply
from enforcer.store.alerts import acknowledge_alert, close_alert
from enforcer.store.audit import record_edit
from enforcer.store.lookup import UnknownIndicatorError
from enforcer.store.manual import DuplicateIndicatorError, add_manual, delete_manual
from enforcer.textsafe import download_name
from enforcer.web.manual import IndicatorCreate

RecordId = Annotated[int, Path(ge=0, le=(1 << 63) - 1)]
"""An alert's or indicator's id in a URL: a 64-bit number (a larger one is a 422, not a 500)."""

router = APIRouter(prefix=PREFIX, include_in_schema=False)


def _see(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _safe_next(value: Any) -> str:
    """Only a console path is a valid place to return to after signing in (no open redirect)."""
    if (
        isinstance(value, str)
        and value.startswith(f"{PREFIX}/")
        and not any(bad in value for bad in ("//", "\\", ".."))
    ):
        return value
    return f"{PREFIX}/"


# --- sign in and out -----------------------------------------------------------------------


@router.get("/login")
def login_form(request: Request) -> Response:
    signer = state(request).signer
    session = read_session(request, signer, state(request).engine)
    if session is not None and session.signed_in:
        return _see(_safe_next(request.query_params.get("next")))
    if session is None:
        session = new_session(signed_in=False)
    response = render(
        request, "login.html", session, next=_safe_next(request.query_params.get("next")), error=""
    )
    set_cookie(response, signer, session)
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    signer = state(request).signer
    form = await request.form()
    session = await run_in_threadpool(read_session, request, signer, state(request).engine)
    csrf = form.get("csrf")
    if session is None or not isinstance(csrf, str) or not signer.check_csrf(session, csrf):
        fresh = new_session(signed_in=False)
        refused = render(
            request, "login.html", fresh, status=403, next=f"{PREFIX}/",
            error="The sign-in form expired. Please enter the token again.",
        )  # fmt: skip
        set_cookie(refused, signer, fresh)
        return refused
    client = request.client.host if request.client else "?"
    token = form.get("token")
    console = state(request)
    limited = console.login_limiter.take(f"console-login:{client}") > 0
    account = None
    if not limited and isinstance(token, str):
        account = await run_in_threadpool(
            account_for_login, console.engine, token, console.admin_token
        )
    if account is None:
        message = (
            "Too many attempts; wait a minute." if limited
            else "That is not the admin token nor an enabled account's token."
        )  # fmt: skip
        return render(
            request, "login.html", session, status=429 if limited else 401,
            next=_safe_next(form.get("next")), error=message,
        )  # fmt: skip
    response = _see(_safe_next(form.get("next")))
    set_cookie(response, signer, new_session(signed_in=True, account=account))
    return response


@router.post("/logout")
def logout(request: Request, session: SignedIn, _form: SessionForm) -> Response:
    sign_out(state(request).engine, session)
    response = _see(f"{PREFIX}/login")
    clear_cookie(response)
    return response


# --- governance ----------------------------------------------------------------------------


@router.post("/apps/{app_id}/tag")
def tag_app(request: Request, app_id: str, session: SignedIn, form: CheckedForm) -> Response:
    tag = form.get("tag")
    if tag not in {*(t.value for t in Tag), ""} or app_id not in state(request).catalog().apps:
        return missing(request, session, f"app {app_id!r}")
    in_git = tagged_in_git(request, session, app_id, form)
    if in_git is not None:  # a git policy file tags the app: offer the patch, not a 409
        return in_git
    console = state(request)
    edit = gov.set_tag(
        console.policy_dir, app_id, str(tag), actor=session.account, now=dt.datetime.now(dt.UTC),
        review={k: str(form.get(k, "")) for k in REVIEW_FIELDS},
    )  # fmt: skip
    problems = gov.check(console.policy_dir)
    if problems:
        # The console's file must never leave the policy set broken: take the change back.
        edit.undo()
        return governance_page(request, session, status=409, app_id=app_id, rejected=problems)
    record_edit(
        console.engine, actor=session.account, action="console.tag", target=app_id,
        details={"tag": str(tag) or None, "file": gov.CONSOLE_FILE},
    )  # fmt: skip
    return _see(f"{PREFIX}/governance?app={app_id}")


@router.post("/governance/apply")
def apply_plan(request: Request, session: SignedIn, form: CheckedForm) -> Response:
    console = state(request)
    try:
        plan = gov.preview(console.engine, console.policy_dir)
    except PolicySetError:
        return governance_page(
            request, session, status=409, notice="The policy set has errors; nothing was applied."
        )
    if form.get("fingerprint") != gov.fingerprint(plan):
        return governance_page(
            request, session, status=409,
            notice="The plan changed since you reviewed it (a policy file or the store changed). "
            "Nothing was applied: review the new plan below.",
        )  # fmt: skip
    # The policy is the truth: publish the staged console.yaml first, then apply its plan (a
    # running daemon reconciling the same files reaches the same store, whoever is first).
    gov.publish(console.policy_dir)
    try:
        revision = apply(console.engine, plan, actor=session.account)
        console.reports.clear()  # the discovered apps' tags changed
    except StalePlanError:
        return governance_page(
            request, session, status=409, notice="The store changed meanwhile; nothing was applied."
        )
    return _see(f"{PREFIX}/governance?applied={revision}")


@router.get("/governance/console.yaml")
def download_console_yaml(request: Request, _session: SignedIn) -> Response:
    return _download(gov.current(state(request).policy_dir), gov.CONSOLE_FILE, "application/yaml")


@router.get("/governance/patch")
def download_patch(request: Request, _session: SignedIn) -> Response:
    app_id = request.query_params.get("app", "")
    edit = gov.change_for(state(request).policy_dir, app_id)
    return _download(edit.patch(), f"enforcer-{app_id or 'console'}.patch", "text/x-diff")


def _download(body: str, name: str, media_type: str) -> Response:
    return Response(
        body,
        media_type=f"{media_type}; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{download_name(name)}"',
            "Cache-Control": "no-store",
        },
    )


@router.post("/domains/custom-app")
def custom_app(request: Request, session: SignedIn, form: CheckedForm) -> Response:
    domains = [d for d in form.getlist("domain") if isinstance(d, str) and d]
    fields = {k: str(form.get(k, "")).strip() for k in ("app_id", "name", "category")}
    try:
        app = App(
            id=fields["app_id"], name=fields["name"] or fields["app_id"], vendor=fields["name"] or fields["app_id"],
            category=fields["category"], domains=tuple(domains),
        )  # fmt: skip
    except ValidationError as exc:
        message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return render(
            request,
            "problem.html",
            session,
            status=422,
            title="The custom app was not created",
            message=message,
        )
    console = state(request)
    edit = gov.add_custom_app(
        console.policy_dir, app_id=app.id, name=app.name, category=app.category,
        domains=list(app.domains),
    )  # fmt: skip
    problems = gov.check(console.policy_dir)
    if problems:
        edit.undo()
        return governance_page(request, session, status=409, rejected=problems)
    record_edit(
        console.engine, actor=session.account, action="console.custom_app", target=app.id,
        details={"name": app.name, "category": app.category, "domains": list(app.domains)},
    )  # fmt: skip
    return _see(f"{PREFIX}/governance?app={app.id}")


# --- alerts and indicators -----------------------------------------------------------------


@router.post("/alerts/{alert_id}/ack")
def ack_alert(
    request: Request, alert_id: RecordId, session: SignedIn, _form: CheckedForm
) -> Response:
    acknowledge_alert(state(request).engine, alert_id, actor=session.account)
    return _see(f"{PREFIX}/alerts")


@router.post("/alerts/{alert_id}/close")
def close_one_alert(
    request: Request, alert_id: RecordId, session: SignedIn, _form: CheckedForm
) -> Response:
    close_alert(state(request).engine, alert_id, actor=session.account)
    return _see(f"{PREFIX}/alerts")


@router.post("/indicators")
def add_indicator(request: Request, session: SignedIn, form: CheckedForm) -> Response:
    scope = str(form.get("scope", "")).strip()
    expires = str(form.get("expires", "")).strip()
    try:
        body = IndicatorCreate(
            indicatorValue=str(form.get("domain", "")),
            action=Action(str(form.get("action", ""))),
            severity=str(form.get("severity", "Medium")),
            title=str(form.get("title", "")).strip() or "Manual indicator",
            expirationTime=dt.datetime.fromisoformat(expires) if expires else None,
            generateAlert=form.get("generate_alert") == "on",
            rbacGroupNames=[scope] if scope else [],
        )
        add_manual(state(request).engine, body.to_indicator(), actor=session.account)
    except (ValidationError, ValueError):
        return _see(f"{PREFIX}/indicators?error=invalid")
    except DuplicateIndicatorError:
        return _see(f"{PREFIX}/indicators?error=duplicate")
    return _see(f"{PREFIX}/indicators?source=manual")


@router.post("/indicators/{indicator_id}/delete")
def remove_indicator(
    request: Request, indicator_id: RecordId, session: SignedIn, _form: CheckedForm
) -> Response:
    try:
        delete_manual(state(request).engine, indicator_id, actor=session.account)
    except UnknownIndicatorError:
        return _see(f"{PREFIX}/indicators?error=missing")
    return _see(f"{PREFIX}/indicators?source=manual")
