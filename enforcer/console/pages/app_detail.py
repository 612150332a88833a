"""One app (``/console/apps/{app_id}``): its catalog entry and risk reasons, its usage in the
range, the devices and users that reached it, the programs that made its traffic, its tags, custom
tags and review."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Request
from fastapi.responses import Response

from enforcer.catalog.risk import explain_risk
from enforcer.console import governance as gov
from enforcer.console.pages.cached import catalog, connect
from enforcer.console.web import PREFIX, SignedIn, days_param, missing, render, state
from enforcer.discovery.reports import app_member_names, day_range, top_processes
from enforcer.store.indicators import read_app_tags
from enforcer.store.queries import app_usage
from enforcer.store.reviews import read_custom_tags, read_reviews

router = APIRouter(prefix=PREFIX, include_in_schema=False)


@router.get("/apps/{app_id}")
def app_page(request: Request, app_id: str, session: SignedIn) -> Response:
    days = days_param(request)
    first, last = day_range(days)
    app = catalog(request).apps.get(app_id)
    with connect(request) as conn:
        usage = app_usage(conn, first, last, app_ids=[app_id]).get(app_id)
        devices, users = app_member_names(conn, app_id, first, last)
        processes = top_processes(conn, first, last, app_id=app_id)
        tags = [
            (scope or "all devices", tag, origin)
            for a, scope, tag, origin in read_app_tags(conn)
            if a == app_id
        ]
        review = read_reviews(conn).get(app_id)
        custom_tags = read_custom_tags(conn).get(app_id, ())
    if app is None and usage is None:
        return missing(request, session, f"app {app_id!r}")
    return render(
        request,
        "app.html",
        session,
        section="apps",
        days=days,
        app_id=app_id,
        app=app,
        usage=usage,
        reasons=explain_risk(app) if app else [],
        attributes=app.risk.model_dump() if app else {},
        devices=devices,
        users=users,
        processes=processes,
        tags=tags,
        review=review,
        overdue=review is not None and review.overdue(dt.datetime.now(dt.UTC).date()),
        custom_tags=custom_tags,
        console_tag=gov.console_tag(state(request).policy_dir, app_id),
    )
