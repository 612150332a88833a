"""Errors as problem-details JSON (RFC 9457): the API's one rendering of every failure.

Handlers here turn HTTP errors, validation errors, store outages and unexpected exceptions into
``{"type", "title", "status", "detail"}`` bodies. A client never sees a stack trace, and a
validation error names the field path but never echoes the input (it may hold a secret).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from enforcer.pipeline.metrics import EVENTS_REJECTED

log = structlog.get_logger("enforcer.api")

PROBLEM_JSON = "application/problem+json"


PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}
"""The JSON Schema of every error body (`errors` on 422 only)."""

PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {
        "description": HTTPStatus(status).phrase,
        "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}},
    }
    for status in (400, 401, 403, 404, 413, 422, 429, 503)
}
"""The errors any route may answer, for the OpenAPI document. Without it the document listed
only FastAPI's own 422 (as application/json, in another shape), so a client generated from
/openapi.json knew neither the 401/403/429/503 answers nor the problem-details body (found by
the schemathesis contract test, tests/hardening/test_contract.py)."""


def problem_body(status: int, detail: str, **extra: Any) -> dict[str, Any]:
    """The body of a problem-details response."""
    return {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **extra,
    }


def problem_response(
    status: int, detail: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """A problem-details response."""
    return JSONResponse(
        problem_body(status, detail, **extra),
        status_code=status,
        headers=dict(headers or {}),
        media_type=PROBLEM_JSON,
    )


def fail(status: int, detail: str, headers: Mapping[str, str] | None = None) -> HTTPException:
    """An exception to raise from a route; rendered as problem details."""
    return HTTPException(status_code=status, detail=detail, headers=dict(headers or {}) or None)


def field_path(loc: Sequence[int | str]) -> str:
    """``("body", "events", 3, "time")`` -> ``body.events[3].time``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return problem_response(exc.status_code, detail, exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    if request.url.path == "/api/v1/events":
        EVENTS_REJECTED.labels("invalid").inc()
    errors = [
        {"field": field_path(e.get("loc", ())), "message": _without_input(e)} for e in exc.errors()
    ]
    first = errors[0] if errors else {"field": "", "message": "invalid request"}
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    detail = f"{first['field']}: {first['message']}{more}"
    return problem_response(422, detail, errors=errors[:50])


def _without_input(error: Mapping[str, Any]) -> str:
    """A validation message with the rejected value taken out: a validator's message may
    quote it (``not a domain name: 'x'``), and the value may be a secret pasted in the wrong
    field. Messages are for the field, never the value."""
    message = str(error.get("msg", ""))
    value = error.get("input")
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        text = str(value)
        if len(text) >= 3:  # shorter values are not secrets, and would cut words apart
            message = message.replace(repr(value), "the value").replace(text, "the value")
    return message


async def _store_error(_request: Request, exc: Exception) -> JSONResponse:
    log.error("store_unavailable", error=str(exc).splitlines()[0][:300])
    return problem_response(503, "the store is unavailable; retry later", {"Retry-After": "5"})


async def _unstorable(_request: Request, exc: Exception) -> JSONResponse:
    # A value that passed validation but the store cannot hold: PostgreSQL refuses NUL in text
    # (SQLite keeps it). The client's input is at fault and resending it cannot help: a 422, so
    # a shim drops the batch instead of resending it forever. The value is never echoed.
    log.warning("unstorable_value", error=type(exc).__name__)
    return problem_response(422, "a value cannot be stored (a NUL character in a text field?)")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("internal_error", path=request.url.path, error=type(exc).__name__, exc_info=exc)
    return problem_response(500, "internal error; the server log has the details")


def install(app: FastAPI) -> None:
    """Render every error of `app` as problem details."""
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(OperationalError, _store_error)
    app.add_exception_handler(DataError, _unstorable)
    # Every pooled connection busy for 30 s: overload, which a retry later may get through.
    app.add_exception_handler(PoolTimeoutError, _store_error)
    app.add_exception_handler(Exception, _unexpected)
