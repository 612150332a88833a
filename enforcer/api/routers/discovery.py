"""Cloud Discovery over HTTP (admin): the same reports as `enforcer discovery`, CSV or JSON, each
of one named report (``?report=NAME``) or all; log upload into named snapshot reports; alerts.
"""

from __future__ import annotations

import datetime as dt
import re
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

import fastapi
from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from enforcer.api.deps import MAX_INT64, Admin, Ctx
from enforcer.api.problems import fail
from enforcer.discovery import reports
from enforcer.discovery.formats import FORMATS, wrong_format_hint
from enforcer.discovery.identity import load_user_names
from enforcer.discovery.ingest import ingest_files
from enforcer.discovery.reader import ReadLimits
from enforcer.discovery.records import FormatError
from enforcer.discovery.upload_audit import record_upload
from enforcer.pipeline.load import catalog_with_custom_apps, discovery_policy
from enforcer.store.alerts import acknowledge_alert, close_alert, list_alerts
from enforcer.store.named_reports import (
    ReportError,
    delete_report,
    find_report,
    list_reports,
    scoped,
)

router = APIRouter(prefix="/api/v1/discovery", tags=["discovery"])

Since = Query("7d", pattern=r"^\d{1,4}[dh]$", description="How far back: 24h, 7d, 30d ...")
Fmt = Query("json", description="json or csv")
ReportParam = Query(
    "all", max_length=256, description="A named report (GET /reports), or all (the default)."
)


def _scope(conn: Connection, report: str) -> None:
    """Limit the reports read on `conn` to a named report; 404 when there is none."""
    try:
        scoped(conn, find_report(conn, report))
    except ReportError as exc:
        raise fail(404, str(exc)) from exc


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
async def apps(
    ctx: Ctx,
    _: Admin,
    since: str = Since,
    format: Literal["json", "csv"] = Fmt,
    report: str = ReportParam,
    tag: str = Query(
        "", max_length=64, description="Only the apps with this custom tag (approved-for-finance)."
    ),
) -> Any:
    first, last = reports.day_range(_days(since))

    def run() -> list[dict[str, Any]]:
        with ctx.engine.connect() as conn:
            _scope(conn, report)
            return reports.apps_report(
                conn, catalog_with_custom_apps(ctx.settings.policy_dir), first, last, custom_tag=tag
            )

    return _answer(await run_in_threadpool(run), format)


@router.get(
    "/apps/{app_id}",
    summary="One app: usage, the machines and users that reached it, top processes",
)
async def app_detail(
    ctx: Ctx, _: Admin, app_id: str, since: str = Since, report: str = ReportParam
) -> Any:
    first, last = reports.day_range(_days(since))

    def run() -> dict[str, Any]:
        with ctx.engine.connect() as conn:
            _scope(conn, report)
            return reports.app_report(
                conn, catalog_with_custom_apps(ctx.settings.policy_dir), app_id, first, last
            )

    try:
        return await run_in_threadpool(run)
    except reports.NotFoundError as exc:
        raise fail(404, str(exc)) from exc


@router.get("/domains", summary="Unrecognised domains, by traffic")
async def domains(
    ctx: Ctx,
    _: Admin,
    since: str = Since,
    format: Literal["json", "csv"] = Fmt,
    report: str = ReportParam,
) -> Any:
    first, last = reports.day_range(_days(since))

    def run() -> list[dict[str, Any]]:
        with ctx.engine.connect() as conn:
            _scope(conn, report)
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
    report: str = ReportParam,
    search: str | None = Query(
        None, max_length=256, description="Part of a hostname, an IP address or a user name."
    ),
) -> Any:
    first, last = reports.day_range(_days(since))
    names = load_user_names(ctx.settings)

    def run() -> list[dict[str, Any]]:
        with ctx.engine.connect() as conn:
            _scope(conn, report)
            return reports.machines_report(
                conn, catalog_with_custom_apps(ctx.settings.policy_dir), first, last, stale_after=_stale_after(ctx), limit=top,
                offset=skip, search=search, names=names,
            )  # fmt: skip

    return _answer(await run_in_threadpool(run), format)


@router.get(
    "/machines/{device}",
    summary="One machine (by hostname): risk explained, enrolled devices, apps, top processes, "
    "users, IP addresses",
)
async def machine(
    ctx: Ctx, _: Admin, device: str, since: str = Since, report: str = ReportParam
) -> Any:
    first, last = reports.day_range(_days(since))

    def run() -> dict[str, Any]:
        with ctx.engine.connect() as conn:
            _scope(conn, report)
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
    ctx: Ctx,
    _: Admin,
    since: str = Since,
    format: Literal["json", "csv"] = Fmt,
    report: str = ReportParam,
) -> Any:
    first, last = reports.day_range(_days(since))

    def run() -> list[dict[str, Any]]:
        with ctx.engine.connect() as conn:
            _scope(conn, report)
            return reports.users_report(conn, first, last)

    return _answer(await run_in_threadpool(run), format)


@router.get("/users/{name}", summary="One user: their devices and apps")
async def user(ctx: Ctx, _: Admin, name: str, since: str = Since, report: str = ReportParam) -> Any:
    first, last = reports.day_range(_days(since))

    names = load_user_names(ctx.settings)

    def run() -> dict[str, Any]:
        with ctx.engine.connect() as conn:
            _scope(conn, report)
            return reports.user_report(conn, name, first, last, names=names)

    try:
        return await run_in_threadpool(run)
    except reports.NotFoundError as exc:
        raise fail(404, str(exc)) from exc


@router.get("/alerts", summary="Alerts raised by alert policies and generateAlert indicators")
async def alerts(
    ctx: Ctx,
    _: Admin,
    since: str = Since,
    status: Literal["open", "acknowledged", "closed"] | None = None,
    severity: str | None = Query(None, max_length=16),
    policy: str | None = Query(None, max_length=128, description="An alert policy's name"),
    format: Literal["json", "csv"] = Fmt,
) -> Any:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=_days(since))

    def run() -> list[dict[str, Any]]:
        with ctx.engine.connect() as conn:
            rows = list_alerts(
                conn, since=start, status=status, severity=severity, policy=policy, limit=1000
            )
        return [
            {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in r.items()}
            for r in rows
        ]

    return _answer(await run_in_threadpool(run), format)


@router.post("/alerts/{alert_id}/acknowledge", status_code=204, summary="Acknowledge an alert")
async def acknowledge(
    ctx: Ctx, admin: Admin, alert_id: Annotated[int, fastapi.Path(ge=0, le=MAX_INT64)]
) -> Response:
    if not await run_in_threadpool(acknowledge_alert, ctx.engine, alert_id, actor=admin):
        raise fail(404, f"no alert with id {alert_id}")
    return Response(status_code=204)


@router.post("/alerts/{alert_id}/close", status_code=204, summary="Close an alert")
async def close(
    ctx: Ctx, admin: Admin, alert_id: Annotated[int, fastapi.Path(ge=0, le=MAX_INT64)]
) -> Response:
    if not await run_in_threadpool(close_alert, ctx.engine, alert_id, actor=admin):
        raise fail(404, f"no alert with id {alert_id}")
    return Response(status_code=204)


@router.get("/reports", summary="Named reports: one per upload, one per live source")
async def named_reports(ctx: Ctx, _: Admin) -> list[dict[str, Any]]:
    def run() -> list[dict[str, Any]]:
        with ctx.engine.connect() as conn:
            return [r.as_json() for r in list_reports(conn)]

    return await run_in_threadpool(run)


@router.delete("/reports/{name}", status_code=204, summary="Delete a snapshot report and its data")
async def delete_named_report(
    ctx: Ctx, admin: Admin, name: Annotated[str, fastapi.Path(max_length=256)]
) -> Response:
    try:
        await run_in_threadpool(delete_report, ctx.engine, name, actor=admin)
    except ReportError as exc:
        raise fail(404 if "no report named" in str(exc) else 409, str(exc)) from exc
    return Response(status_code=204)


@router.post("/upload", summary="Upload a firewall/proxy log (body: the log, gzip accepted)")
async def upload(
    ctx: Ctx,
    admin: Admin,
    request: Request,
    format: str = Query(..., description=f"One of {', '.join(FORMATS)}"),
    map: str | None = Query(None, max_length=2000, description="csv/jsonl column mapping"),
    report: str | None = Query(
        None, max_length=240, description="Name of the snapshot report (default: upload TIME)"
    ),
) -> dict[str, Any]:
    if format not in FORMATS:
        raise fail(422, f"format: not one of {', '.join(FORMATS)}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"upload {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%S}"
        with path.open("wb") as out:
            async for chunk in request.stream():
                out.write(chunk)
        try:
            catalog, policies = discovery_policy(ctx.settings.policy_dir)
            stats = await run_in_threadpool(
                ingest_files,
                ctx.engine,
                catalog,
                [path],
                format,
                mapping=map,
                report_name=report,
                limits=ReadLimits.of(ctx.settings),
                policies=policies,
            )
        except FormatError as exc:
            raise fail(422, exc.message) from exc
        except ReportError as exc:
            raise fail(409, str(exc)) from exc
        if stats.records == 0 and stats.samples:
            # Nothing of the upload was kept: a wrong format, or only hostile lines (deeply
            # nested JSON, a line over the length cap). The first bad line says which.
            line = stats.samples[0][1]
            raise fail(
                422,
                f"no line parsed as {format}: line {line.line_no}: {line.reason}"
                + wrong_format_hint(path, format).replace(path.name, "the upload"),
            )
    await run_in_threadpool(record_upload, ctx.engine, stats, format, actor=admin)
    data = stats.as_dict()
    for sample in data["badLineSamples"]:  # type: ignore[attr-defined]
        sample["file"] = "upload"
    return data
