"""The web console: Cloud Discovery pages, machine investigation and governance, server-rendered.

`install(app)` adds it to the API's FastAPI application, so `enforcer serve` serves both from one
process and one port. The console signs in with the admin token (see `session`), never caches
data in the browser, and changes policy only through a console-managed policy file (see
`governance`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from enforcer.console.session import CsrfError, LoginRequiredError, SessionSigner
from enforcer.console.web import HERE, PREFIX, ConsoleState, make_templates, no_store


def install(app: FastAPI) -> None:
    """Serve the console under /console on `app` (built by `enforcer.api.create_app`)."""
    # Imported here, not at the top: the routes use the API's modules, and the API's factory
    # installs the console, so a top-level import would be circular.
    from enforcer.console import actions, pages

    app.state.console = ConsoleState(SessionSigner(app.state.ctx.admin_token), make_templates())
    app.include_router(actions.router)
    app.include_router(pages.router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.add_exception_handler(LoginRequiredError, _to_login)
    app.add_exception_handler(CsrfError, _csrf_refused)
    app.add_api_route("/", _home, include_in_schema=False)
    _warm_at_start_up(app, pages.warm)


def _warm_at_start_up(app: FastAPI, warm: Callable[[FastAPI], None]) -> None:
    """Run `warm(app)` when the server starts, inside the API's own lifespan."""
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(running: FastAPI) -> AsyncIterator[Any]:
        async with inner(running) as value:
            warm(running)
            yield value

    app.router.lifespan_context = lifespan


async def _home() -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}/", status_code=303)


async def _to_login(request: Request, _exc: Exception) -> Response:
    target = request.url.path if request.method == "GET" else f"{PREFIX}/"
    if request.url.query and request.method == "GET":
        target += f"?{request.url.query}"
    return no_store(RedirectResponse(f"{PREFIX}/login?next={quote(target)}", status_code=303))


async def _csrf_refused(_request: Request, _exc: Exception) -> Response:
    body = (
        "<!doctype html><title>Refused</title><h1>Refused</h1><p>This form was not sent by the "
        f'console (missing or wrong CSRF token). <a href="{PREFIX}/">Back to the console</a>.</p>'
    )
    return no_store(HTMLResponse(body, status_code=403))
