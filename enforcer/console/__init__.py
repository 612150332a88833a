"""The web console: Cloud Discovery pages, machine investigation and governance, server-rendered.

`install(app, ...)` adds it to a FastAPI application (the one `enforcer serve` also serves the API
from: one process, one port); the console needs the store, the policy directory and the admin
token, never the API's modules. It signs in with an account's token (`session`: the admin token
or one of ``enforcer accounts``; analysts read and export, admins also change), never caches data in
the browser, and changes policy only through a console-managed policy file (`governance`).

Modules: `pages` (the reading pages, one module each), `actions` (the forms), `governance` (the
console's policy file, staging and plan preview), `web` (what every route shares: state, sign-in,
rendering), `session` (cookie and CSRF), `tables` (sorting, paging, CSV), `chart` (SVG bars),
`report_cache` (range-wide results kept for a minute).
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine

from enforcer.console import actions, pages
from enforcer.console.pages.cached import warm
from enforcer.console.session import (
    CsrfError,
    LoginRequiredError,
    RoleRequiredError,
    SessionSigner,
)
from enforcer.console.web import HERE, PREFIX, ConsoleState, Limiter, make_templates, no_store
from enforcer.store.named_reports import ReportError


def install(
    app: FastAPI,
    *,
    policy_dir: Path,
    engine: Engine,
    admin_token: bytes,
    login_limiter: Limiter,
    stale_after: dt.timedelta,
) -> None:
    """Serve the console under /console on `app`: the policy set in `policy_dir`, the store behind
    `engine`, signed in with `admin_token` at most as often as `login_limiter` allows; devices
    behind the newest revision for longer than `stale_after` are shown as stale."""
    console = ConsoleState(
        policy_dir=policy_dir,
        engine=engine,
        admin_token=admin_token,
        login_limiter=login_limiter,
        signer=SessionSigner(admin_token),
        templates=make_templates(),
        stale_after=stale_after,
    )
    app.state.console = console
    app.include_router(actions.router)
    app.include_router(pages.router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.add_exception_handler(LoginRequiredError, _to_login)
    app.add_exception_handler(CsrfError, _csrf_refused)
    app.add_exception_handler(RoleRequiredError, _role_refused)
    app.add_exception_handler(ReportError, _unknown_report)
    app.add_api_route("/", _home, include_in_schema=False)
    _run_at_start_up(app, lambda: warm(console))


def _run_at_start_up(app: FastAPI, start: Callable[[], None]) -> None:
    """Run `start()` when the server starts, inside the application's own lifespan."""
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(running: FastAPI) -> AsyncIterator[Any]:
        async with inner(running) as value:
            start()
            yield value

    app.router.lifespan_context = lifespan


async def _home() -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}/", status_code=303)


async def _to_login(request: Request, _exc: Exception) -> Response:
    target = request.url.path if request.method == "GET" else f"{PREFIX}/"
    if request.url.query and request.method == "GET":
        target += f"?{request.url.query}"
    return no_store(RedirectResponse(f"{PREFIX}/login?next={quote(target)}", status_code=303))


async def _unknown_report(request: Request, exc: Exception) -> Response:
    """A page asked for a named report that does not exist (deleted since the link was made)."""
    body = (
        f"<!doctype html><title>Not found</title><h1>Not found</h1><p>{html.escape(str(exc))}</p>"
    )
    body += f'<p><a href="{PREFIX}/">Back to the dashboard</a></p>'
    return no_store(HTMLResponse(body, status_code=404))


async def _role_refused(_request: Request, exc: Exception) -> Response:
    """An analyst asked for a change: the page says which role it needs (403)."""
    assert isinstance(exc, RoleRequiredError)
    body = (
        "<!doctype html><title>Refused</title><h1>Refused</h1><p>This change needs the admin "
        f"role; you are signed in as {html.escape(exc.session.account)}, whose role is "
        f"{html.escape(exc.session.role)} (it reads and exports only). "
        f'<a href="{PREFIX}/">Back to the console</a>.</p>'
    )
    return no_store(HTMLResponse(body, status_code=403))


async def _csrf_refused(_request: Request, _exc: Exception) -> Response:
    body = (
        "<!doctype html><title>Refused</title><h1>Refused</h1><p>This form was not sent by the "
        f'console (missing or wrong CSRF token). <a href="{PREFIX}/">Back to the console</a>.</p>'
    )
    return no_store(HTMLResponse(body, status_code=403))
