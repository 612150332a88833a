"""What the discovery table pages share: a range-wide table answered as HTML or CSV (apps,
machines, users, domains), the list of the machines or users seen in the range (`Listing`), and
the lookup of one machine's or user's report (None when unknown: the page answers 404)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy import Connection

from enforcer.console import tables as t
from enforcer.console.pages.cached import cached, connect
from enforcer.console.session import Session
from enforcer.console.web import days_param, render
from enforcer.discovery.reports import NotFoundError, day_range

DEFAULT_SORT = "-traffic"
CHUNK = 500
"""Rows annotated per call: bounds the IN (...) lists of the annotating queries."""

TRAFFIC_COLUMNS = (
    t.Column("transactions", "Transactions", "number"),
    t.Column("traffic", "Traffic", "bytes"),
    t.Column("upload", "Upload", "bytes"),
    t.Column("download", "Download", "bytes"),
)
"""The range's traffic, in every discovery table."""
REACH_COLUMNS = (t.Column("users", "Users", "number"), t.Column("devices", "Devices", "number"))
"""How many users and devices reached an app or a domain."""
LAST_SEEN_COLUMN = t.Column("lastSeen", "Last seen", "time")

Annotate = Callable[[Request, list[dict[str, Any]], int, int], None]
"""Adds the columns computed for the rows shown only, to rows that carry their ``ordinal``."""


def range_table(
    request: Request,
    session: Session,
    *,
    section: str,
    columns: Sequence[t.Column],
    rows: Sequence[dict[str, Any]],
    csv_name: str,
    days: int,
    first: int,
    last: int,
    annotate: Annotate | None = None,
    **context: Any,
) -> Response:
    """The page `<section>.html` showing `rows` as a sorted, paged table, or all of them as CSV.

    With `annotate`, the rows shown (every row for CSV, one page otherwise) get their page-only
    columns, in chunks, and lose their ``ordinal`` (an internal key, never shown or exported).
    """
    table = t.table(request, columns, rows, default_sort=DEFAULT_SORT, csv_name=csv_name)
    csv = t.wants_csv(request)
    shown: Sequence[dict[str, Any]] = (
        t.order(request, columns, rows, DEFAULT_SORT) if csv else table.rows
    )
    if annotate is not None:
        copies = [dict(r) for r in shown]  # the cached rows stay as they are
        for start in range(0, len(copies), CHUNK):
            annotate(request, copies[start : start + CHUNK], first, last)
        for r in copies:
            del r["ordinal"]
        shown = copies
    if csv:
        return t.csv_response(shown, columns, csv_name)
    return render(
        request,
        f"{section}.html",
        session,
        section=section,
        days=days,
        table=dataclasses.replace(table, rows=shown),
        params=request.query_params,
        **context,
    )


@dataclass(frozen=True)
class Listing:
    """The machines or the users seen in the range: one row each with its range totals (read
    through the report cache), searched by name with ``?q=``, and the columns that cost a query
    per row computed for the rows shown only (`annotate`)."""

    section: str
    """The URL, template and CSV name: machines or users."""
    heading: str
    search_label: str
    """What the search box searches."""
    key: str
    """The column holding the name searched and linked."""
    report: str
    """The report cache's name for `totals`."""
    totals: Callable[[Connection, int, int], list[dict[str, Any]]]
    columns: tuple[t.Column, ...]
    annotate: Annotate
    search: Callable[[Connection, str, int, int], set[int]] | None = None
    """Beyond the name: the ordinals of the rows a search also finds (a machine's addresses
    and users)."""

    def page(self, request: Request, session: Session) -> Response:
        """The list page (or its CSV)."""
        days = days_param(request)
        first, last = day_range(days)
        rows = cached(request, self.report, first, last, self.totals)
        text = request.query_params.get("q", "").strip().lower()
        if text:
            also: set[int] = set()
            if self.search is not None:
                with connect(request) as conn:
                    also = self.search(conn, text, first, last)
            rows = [r for r in rows if text in r[self.key].lower() or r["ordinal"] in also]
        return range_table(
            request, session, section=self.section, columns=self.columns, rows=rows,
            csv_name=self.section, days=days, first=first, last=last, annotate=self.annotate,
            heading=self.heading, search_label=self.search_label,
        )  # fmt: skip


def find_report(
    request: Request, read: Callable[[Connection], dict[str, Any]]
) -> dict[str, Any] | None:
    """The report `read` returns from the store, or None when it names nothing known."""
    try:
        with connect(request) as conn:
            return read(conn)
    except NotFoundError:
        return None
