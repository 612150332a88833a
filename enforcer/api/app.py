"""The API server's application factory: routers, error rendering, limits, the revision watcher.

`create_app(settings, engine)` builds the API alone; `enforcer.webapp.create_web_app` adds the
web console to it, and that is what `enforcer serve` and `enforcer daemon --serve` run under
uvicorn.
"""

from __future__ import annotations

import ipaddress
import math
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from sqlalchemy import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from enforcer import __version__
from enforcer.api import docs_page, problems
from enforcer.api.body_limit import BodyLimitMiddleware
from enforcer.api.deps import ApiContext, ApiLimits
from enforcer.api.groups import GroupDecider
from enforcer.api.ratelimit import RateLimiter
from enforcer.api.routers import (
    audit,
    devices,
    discovery,
    enroll,
    events,
    health,
    indicators,
    metrics,
    sync,
)
from enforcer.api.sync_answers import SyncAnswers
from enforcer.api.watcher import RevisionWatcher
from enforcer.config import Settings
from enforcer.errors import PermanentError
from enforcer.store.migrate import code_head
from enforcer.wire.limits import GROUP_NAME_PATTERN

log = structlog.get_logger("enforcer.api")

MIN_SECRET_LENGTH = 16


MIN_SECRET_BITS = 64.0
"""Least estimated entropy of a secret (length times log2 of its distinct characters)."""


def secret_bits(value: str) -> float:
    """A rough upper bound of a secret's entropy: its length times log2 of the number of
    distinct characters in it (``aaaa...`` has 0 bits, a 32-byte token_urlsafe about 190)."""
    distinct = len(set(value))
    return len(value) * math.log2(distinct) if distinct > 1 else 0.0


def weak_secret(value: str) -> bool:
    """Whether a secret is too regular to stand up to guessing (`MIN_SECRET_BITS`)."""
    return secret_bits(value) < MIN_SECRET_BITS


class ServerConfigError(PermanentError):
    """The server's settings are unsafe (a missing or short secret): it refuses to start."""


def check_server_settings(settings: Settings) -> tuple[bytes, bytes]:
    """The admin token and enrolment secret, or ServerConfigError saying what to set."""
    out: list[bytes] = []
    for name, secret in (
        ("ENFORCER_ADMIN_TOKEN", settings.admin_token),
        ("ENFORCER_ENROLL_SECRET", settings.enroll_secret),
    ):
        value = secret.get_secret_value() if secret is not None else ""
        if not value:
            raise ServerConfigError(
                f"{name} is not set: the server refuses to start without it "
                f"(use a random value of at least {MIN_SECRET_LENGTH} characters, "
                "e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
        if len(value) < MIN_SECRET_LENGTH:
            raise ServerConfigError(
                f"{name} is too short ({len(value)} characters): use at least {MIN_SECRET_LENGTH}"
            )
        if weak_secret(value):
            raise ServerConfigError(
                f"{name} repeats too few characters to stand up to guessing (about "
                f"{secret_bits(value):.0f} bits): use a random value, e.g. "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        out.append(value.encode("utf-8", "surrogateescape"))
    if out[0] == out[1]:
        raise ServerConfigError(
            "ENFORCER_ADMIN_TOKEN and ENFORCER_ENROLL_SECRET must differ: "
            "every enrolling device knows the enrolment secret"
        )
    seen = set(out)
    for group, secret in sorted(settings.group_secrets.items()):
        value = secret.get_secret_value()
        where = f"ENFORCER_GROUP_SECRETS[{group!r}]"
        if not re.fullmatch(GROUP_NAME_PATTERN, group):
            raise ServerConfigError(f"{where}: not a device group name")
        if len(value) < MIN_SECRET_LENGTH:
            raise ServerConfigError(
                f"{where} is too short ({len(value)} characters): use at least {MIN_SECRET_LENGTH}"
            )
        if weak_secret(value):
            raise ServerConfigError(f"{where} repeats too few characters: use a random value")
        encoded = value.encode("utf-8", "surrogateescape")
        if encoded in seen:
            raise ServerConfigError(
                f"{where} must differ from the admin token, the enrolment secret and the "
                "other groups' secrets"
            )
        seen.add(encoded)
    return out[0], out[1]


def create_app(settings: Settings, engine: Engine, limits: ApiLimits | None = None) -> FastAPI:
    """The FastAPI application serving `engine` (a migrated store)."""
    admin_token, enroll_secret = check_server_settings(settings)
    limits = limits or ApiLimits(enroll_per_minute=settings.enroll_per_minute)
    ctx = ApiContext(
        settings=settings,
        engine=engine,
        limits=limits,
        admin_token=admin_token,
        enroll_secret=enroll_secret,
        watcher=RevisionWatcher(engine, limits.poll_interval),
        enroll_limiter=RateLimiter(limits.enroll_per_minute),
        admin_limiter=RateLimiter(limits.bad_admin_tokens_per_minute),
        events_limiter=RateLimiter(settings.events_per_minute),
        migration_head=code_head(),
        groups=GroupDecider(settings, enroll_secret),
        trusted_networks=tuple(
            ipaddress.ip_network(item, strict=False) for item in settings.trusted_proxies
        ),
        answers=SyncAnswers.from_settings(settings),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        ctx.watcher.ensure_started()
        yield
        await ctx.watcher.stop()

    app = FastAPI(
        title="Enforcer API",
        version=__version__,
        description=(
            "Device enrolment, indicator sync and event upload for Enforcer's endpoint shims, "
            "and the admin Indicators API (Defender for Endpoint field names)."
        ),
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load their assets from a CDN: docs_page serves /docs
        redoc_url=None,
    )
    docs_page.install(app)
    app.state.ctx = ctx
    problems.install(app)
    for module in (health, enroll, sync, events, indicators, devices, discovery, metrics, audit):
        app.include_router(module.router, responses=problems.PROBLEM_RESPONSES)
    app.add_middleware(BodyLimitMiddleware, max_bytes=limits.max_body_bytes)
    app.add_middleware(AccessLogMiddleware)
    return app


class AccessLogMiddleware:
    """One structured log event per request: method, path, status, duration (never headers)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            log.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                status=status,
                ms=round((time.perf_counter() - start) * 1000, 1),
            )
