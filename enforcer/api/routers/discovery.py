"""Cloud Discovery over HTTP (admin): the same reports as `enforcer discovery`, CSV or JSON, and
log upload for snapshot reports.
"""

from __future__ import annotations

import datetime as dt
import re
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

import fastapi
from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from enforcer.api.deps import MAX_INT64, Admin, Ctx
from enforcer.api.problems import fail
from enforcer.discovery import reports
from enforcer.discovery.formats import FORMATS
from enforcer.discovery.ingest import ingest_files
from enforcer.discovery.records import FormatError
from enforcer.pipeline.load import catalog_with_custom_apps
from enforcer.store.alerts import acknowledge_alert, list_alerts

router = APIRouter(prefix="/api/v1/discovery", tags=["discovery"])

Since = Query("7d", pattern=r"^\d{1,4}[dh]$", description="How far back: 24h, 7d, 30d ...")
Fmt = Query("json", description="json or csv")


def _days(since: str) -> int:
    match = re.fullmatch(r"(\d+)([dh])", since)
    assert match is not None  # the Query pattern checked it
    n = int(match.group(1))
    return max(1, n if match.group(2) == "d" else -(-n // 24))


def _stale_after(ctx: Ctx) -> dt.timedelta:
    return dt.timedelta(seconds=ctx.settings.stale_after)


def _answer(rows: list[dict[str, Any]] | dict[str, Any], fmt: str) -> Any:
    if fmt == "csv":
        listed = rows if isinstance(rows, list) else [rows]
        return Response(reports.to_csv(listed), media_type="text/csv")
    return rows


@router.get("/apps", summary="Discovered apps")
async def apps(ctx: Ctx, _: Admin, since: str = Since, format: Literal["json", "csv"] = Fmt) -> Any:
    first, last = reports.day_range(_days(since))

    def run() -> list[dict[str, Any]]:
        with ctx.engine.connect() as conn:
            return reports.apps_report(
                conn, catalog_with_custom_apps(ctx.settings.policy_dir), first, last
            )

    return _answer(await run_in_threadpool(run), format)


@router.get(
    "/apps/{app_id}",
    summary="One app: usage, the machines and users that reached it, top processes",
)
async def app_detail(ctx: Ctx, _: Admin, app_id: str, since: str = Since) -> Any:
    first, last = reports.day_range(_days(since))

    def run() -> dict[str, Any]:
        with ctx.engine.connect() as conn:
            return reports.app_report(
                conn, catalog_with_custom_apps(ctx.settings.policy_dir), app_id, first, last
            )

    try:
        return await run_in_threadpool(run)
    except reports.NotFoundError as exc:
        raise fail(404, str(exc)) from exc


@router.get("/domains", summary="Unrecognised domains, by traffic")
async def domains(
    ctx: Ctx, _: Admin, since: str = Since, format: Literal["json", "csv"] = Fmt
) -> Any:
    first, last = reports.day_range(_days(since))

    def run() -> list[dict[str, Any]]:
        with ctx.engine.connect() as conn:
            return reports.domains_report(conn, first, last)

    return _answer(await run_in_threadpool(run), format)


@router.get("/machines", summary="Machines, by traffic, with risk level")
async def machines(
    ctx: Ctx,
    _: Admin,
    since: str = Since,
    format: Literal["json", "csv"] = Fmt,
    top: int = Query(100, ge=1, le=1000),
    skip: int = Query(0, ge=0),
) -> Any:
    first, last = reports.day_range(_days(since))

    def run() -> list[dict[str, Any]]:
        with ctx.engine.connect() as conn:
            return reports.machines_report(
                conn, catalog_with_custom_apps(ctx.settings.policy_dir), first, last, stale_after=_stale_after(ctx), limit=top,
                offset=skip,
            )  # fmt: skip

    return _answer(await run_in_threadpool(run), format)


@router.get(
    "/machines/{device}",
    summary="One machine (by hostname): risk explained, enrolled devices, apps, top processes, "
    "users, IP addresses",
)
async def machine(ctx: Ctx, _: Admin, device: str, since: str = Since) -> Any:
    first, last = reports.day_range(_days(since))

    def run() -> dict[str, Any]:
        with ctx.engine.connect() as conn:
            return reports.machine_report(
                conn,
                catalog_with_custom_apps(ctx.settings.policy_dir),
                device,
                first,
                last,
                stale_after=_stale_after(ctx),
            )

    try:
        return await run_in_threadpool(run)
    except reports.NotFoundError as exc:
        raise fail(404, str(exc)) from exc


@router.get("/users", summary="Users, by traffic")
async def users(
    ctx: Ctx, _: Admin, since: str = Since, format: Literal["json", "csv"] = Fmt
) -> Any:
    first, last = reports.day_range(_days(since))

    def run() -> list[dict[str, Any]]:
        with ctx.engine.connect() as conn:
            return reports.users_report(conn, first, last)

    return _answer(await run_in_threadpool(run), format)


@router.get("/users/{name}", summary="One user: their devices and apps")
async def user(ctx: Ctx, _: Admin, name: str, since: str = Since) -> Any:
    first, last = reports.day_range(_days(since))

    def run() -> dict[str, Any]:
        with ctx.engine.connect() as conn:
            return reports.user_report(conn, name, first, last)

    try:
        return await run_in_threadpool(run)
    except reports.NotFoundError as exc:
        raise fail(404, str(exc)) from exc


@router.get("/alerts", summary="Alerts raised by generateAlert indicators")
async def alerts(
    ctx: Ctx,
    _: Admin,
    since: str = Since,
    status: Literal["open", "acknowledged"] | None = None,
    severity: str | None = Query(None, max_length=16),
    format: Literal["json", "csv"] = Fmt,
) -> Any:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=_days(since))

    def run() -> list[dict[str, Any]]:
        with ctx.engine.connect() as conn:
            rows = list_alerts(conn, since=start, status=status, severity=severity, limit=1000)
        return [
            {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in r.items()}
            for r in rows
        ]

    return _answer(await run_in_threadpool(run), format)


@router.post("/alerts/{alert_id}/acknowledge", status_code=204, summary="Acknowledge an alert")
async def acknowledge(
    ctx: Ctx, _: Admin, alert_id: Annotated[int, fastapi.Path(ge=0, le=MAX_INT64)]
) -> Response:
    if not await run_in_threadpool(acknowledge_alert, ctx.engine, alert_id, actor="api"):
        raise fail(404, f"no alert with id {alert_id}")
    return Response(status_code=204)


@router.post("/upload", summary="Upload a firewall/proxy log (body: the log, gzip accepted)")
async def upload(
    ctx: Ctx,
    _: Admin,
    request: Request,
    format: str = Query(..., description=f"One of {', '.join(FORMATS)}"),
    map: str | None = Query(None, max_length=2000, description="csv/jsonl column mapping"),
) -> dict[str, Any]:
    if format not in FORMATS:
        raise fail(422, f"format {format!r} is not one of {', '.join(FORMATS)}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "upload.log"
        with path.open("wb") as out:
            async for chunk in request.stream():
                out.write(chunk)
        try:
            stats = await run_in_threadpool(
                ingest_files,
                ctx.engine,
                catalog_with_custom_apps(ctx.settings.policy_dir),
                [path],
                format,
                mapping=map,
            )
        except FormatError as exc:
            raise fail(422, exc.message) from exc
    data = stats.as_dict()
    for sample in data["badLineSamples"]:  # type: ignore[attr-defined]
        sample["file"] = "upload"
    return data
