"""The pages' reads through the report cache: range-wide sums answered from the last result, and
their computation for the default range when the server starts (`warm`).

Queries stay on the discovery rollup tables (day rows with bitsets), so a 30-day range over
10,000 devices answers quickly; per-device risk is computed for the page shown only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from functools import partial
from typing import Any, TypeVar

import structlog
from fastapi import Request
from sqlalchemy import Connection, Engine

from enforcer.catalog import Catalog
from enforcer.console.web import ConsoleState, state
from enforcer.discovery import reports
from enforcer.discovery.reports import day_range
from enforcer.store.named_reports import ALL, Report, ReportError, find_report, scoped

T = TypeVar("T")
log = structlog.get_logger("enforcer.console")


def catalog(request: Request) -> Catalog:
    """The catalog the pages name and score apps with (custom apps included)."""
    return state(request).catalog()


def connect(request: Request) -> Connection:
    """A connection to the store, for the reads a page makes itself, its discovery reads
    limited to the named report the page's ``?report=`` selects (none: all reports)."""
    conn = state(request).engine.connect()
    try:
        scoped(conn, find_report(conn, selected_report(request)))
    except ReportError:
        conn.close()
        raise
    return conn


def selected_report(request: Request) -> str:
    """The named report a page shows (``?report=NAME``), or ``all``."""
    return request.query_params.get("report") or ALL


def cached(request: Request, name: Hashable, first: int, last: int, read: Callable[..., T]) -> T:
    """A range-wide read through the report cache: `read(conn, first, last)`, of the page's
    selected report (its id is part of the cache key)."""
    console = state(request)
    with console.engine.connect() as conn:
        report = find_report(conn, selected_report(request))
    return _through_cache(console, name, first, last, read, report)


def _apps_report(console: ConsoleState) -> tuple[Hashable, Callable[[Connection, int, int], Any]]:
    """The discovered-apps report and its cache key (custom apps change names and categories)."""
    catalog = console.catalog()
    return ("apps", console.catalog_digest), lambda c, f, la: reports.apps_report(c, catalog, f, la)


def apps_rows(request: Request, first: int, last: int) -> list[dict[str, Any]]:
    """The discovered apps of the range, one dict per app (a copy the page may annotate)."""
    key, read = _apps_report(state(request))
    return [dict(r) for r in cached(request, key, first, last, read)]


def warm(console: ConsoleState) -> None:
    """Compute the default range's sums in a background thread (at start-up), so the first
    dashboard after a restart does not wait for 30 days of rollups."""
    first, last = day_range(30)

    def run() -> None:
        jobs: list[tuple[Hashable, Callable[[Connection, int, int], Any]]] = [
            _apps_report(console),
            ("devices", reports.device_totals),
            ("users-count", reports.distinct_users),
            ("users", reports.user_totals),
        ]
        for name, read in jobs:
            try:
                _through_cache(console, name, first, last, read)
            except Exception as exc:  # a warm-up is an optimisation: never fail the server
                log.warning("console_warm_up_failed", report=str(name), error=repr(exc))
                return

    threading.Thread(target=run, name="console-warm-up", daemon=True).start()


def _through_cache(
    console: ConsoleState,
    name: Hashable,
    first: int,
    last: int,
    read: Callable[..., T],
    report: Report | None = None,
) -> T:
    key = (name, first, last, report.id if report else None)
    return console.reports.get(key, partial(_read, console.engine, read, first, last, report))


def _read(
    engine: Engine,
    read: Callable[[Connection, int, int], T],
    first: int,
    last: int,
    report: Report | None,
) -> T:
    with engine.connect() as conn:
        return read(scoped(conn, report), first, last)
