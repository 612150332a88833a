"""`create_web_app`: the one application `enforcer serve` runs, the API with the console on it.

It sits above `enforcer.api` and `enforcer.console` so that neither imports the other: the API
builds its own application (`enforcer.api.create_app`) and this module adds the console to it,
so both are served by one process on one port and the console signs in with the API's admin
token and shares its per-address sign-in rate limit.
"""

from __future__ import annotations

import datetime as dt

from fastapi import FastAPI
from sqlalchemy import Engine

from enforcer.api import ApiLimits, create_app
from enforcer.api.deps import ApiContext
from enforcer.config import Settings
from enforcer.console import install as install_console


def create_web_app(settings: Settings, engine: Engine, limits: ApiLimits | None = None) -> FastAPI:
    """The API for `engine` (a migrated store) with the web console under /console."""
    app = create_app(settings, engine, limits)
    ctx: ApiContext = app.state.ctx
    install_console(
        app,
        policy_dir=settings.policy_dir,
        engine=engine,
        admin_token=ctx.admin_token,
        login_limiter=ctx.enroll_limiter,
        stale_after=dt.timedelta(seconds=settings.stale_after),
    )
    return app
