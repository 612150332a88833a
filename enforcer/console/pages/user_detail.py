"""One user (``/console/users/{name}``): their traffic in the range, the devices they used and the
apps they reached, and the forms of their name seen in logs and events (``CONTOSO\\alice``,
``alice@contoso.com``: one user, `enforcer.discovery.identity`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from enforcer.config import get_settings
from enforcer.console.pages.cached import catalog
from enforcer.console.pages.listing import find_report
from enforcer.console.web import PREFIX, SignedIn, days_param, missing, render
from enforcer.discovery import reports
from enforcer.discovery.identity import load_user_names
from enforcer.discovery.reports import day_range

router = APIRouter(prefix=PREFIX, include_in_schema=False)


@router.get("/users/{name:path}")
def user_page(request: Request, name: str, session: SignedIn) -> Response:
    days = days_param(request)
    first, last = day_range(days)
    known = catalog(request)
    names = load_user_names(get_settings())
    report = find_report(request, lambda c: reports.user_report(c, name, first, last, names=names))
    if report is None:
        return missing(request, session, f"user {name!r}")
    apps = [(a, known.apps[a].name if a in known.apps else a) for a in report["apps"]]
    return render(request, "user.html", session, section="users", days=days, u=report, apps=apps)
