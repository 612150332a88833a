"""Liveness and readiness probes (unauthenticated: they reveal nothing but up or down)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from enforcer.api.deps import Ctx
from enforcer.api.problems import problem_response
from enforcer.store.migrate import current_revision

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    """Answers as long as the process serves requests."""
    return {"status": "ok"}


@router.get("/readyz", summary="The store is reachable and migrated", response_model=None)
def readyz(ctx: Ctx) -> dict[str, Any] | JSONResponse:
    """Ready when the store answers and its schema is at the newest migration."""
    try:
        current = current_revision(ctx.engine)
    except SQLAlchemyError:
        return problem_response(503, "the store is unreachable")
    if current != ctx.migration_head:
        return problem_response(
            503, f"the store's schema is at {current}, not {ctx.migration_head}: run migrations"
        )
    return {"status": "ready", "schema": current}
