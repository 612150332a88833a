"""Tables as data: columns, sorting, paging and CSV export, shared by every table page.

A page builds its rows (plain dicts from the discovery reports), names its columns, and this module
sorts and pages them from the query string; the same rows, unpaged, are the CSV export, so what an
admin downloads is exactly what the table shows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from enforcer.discovery.reports import to_csv
from enforcer.textsafe import download_name

PAGE_SIZE = 50


@dataclass(frozen=True)
class Column:
    """One column: the row key, its heading, how to show it, and where a cell links to."""

    key: str
    label: str
    kind: str = "text"
    """text, number, bytes, duration (seconds), time, risk, level, severity or tag: decides
    alignment and formatting."""
    link: Callable[[dict[str, Any]], str] | None = None
    sortable: bool = True

    @property
    def numeric(self) -> bool:
        return self.kind in ("number", "bytes", "duration", "risk")


@dataclass(frozen=True)
class Table:
    """A sorted page of rows, with what the template needs to draw headings and pagers."""

    columns: Sequence[Column]
    rows: Sequence[dict[str, Any]]
    total: int
    page: int
    pages: int
    sort: str
    descending: bool
    csv_name: str


PAGE_MAX = 1_000_000
"""Highest page number taken (beyond, the last pages are empty anyway; a huge number would
overflow the database's offset)."""


def page_number(request: Request) -> int:
    """The 1-based ``?page=`` (1 when missing or not a positive number; at most `PAGE_MAX`)."""
    try:
        return min(PAGE_MAX, max(1, int(request.query_params.get("page", 1))))
    except ValueError:
        return 1


def sort_params(request: Request, columns: Sequence[Column], default: str) -> tuple[str, bool]:
    """(sort key, descending) from ``?sort=key`` or ``?sort=-key``; unknown keys fall back."""
    raw = request.query_params.get("sort", default)
    descending = raw.startswith("-")
    key = raw.lstrip("-")
    if key not in {c.key for c in columns if c.sortable}:
        return default.lstrip("-"), default.startswith("-")
    return key, descending


def _sort_key(key: str) -> Callable[[dict[str, Any]], tuple[int, Any]]:
    def get(row: dict[str, Any]) -> tuple[int, Any]:
        value = row.get(key)
        if value is None or value == "":
            return (1, 0)  # empty cells last whichever way the column is sorted
        return (0, value.lower() if isinstance(value, str) else value)

    return get


def table(
    request: Request,
    columns: Sequence[Column],
    rows: Sequence[dict[str, Any]],
    *,
    default_sort: str,
    csv_name: str,
) -> Table:
    """Sort and page `rows` as the query string asks."""
    key, descending = sort_params(request, columns, default_sort)
    ordered = order(request, columns, rows, default_sort)
    pages = max(1, -(-len(ordered) // PAGE_SIZE))
    page = min(page_number(request), pages)
    shown = ordered[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    return Table(columns, shown, len(ordered), page, pages, key, descending, csv_name)


def order(
    request: Request, columns: Sequence[Column], rows: Sequence[dict[str, Any]], default_sort: str
) -> list[dict[str, Any]]:
    """Every row in the order the query string asks (empty cells last): the CSV export."""
    key, descending = sort_params(request, columns, default_sort)
    present = [r for r in rows if r.get(key) not in (None, "")]
    empty = [r for r in rows if r.get(key) in (None, "")]
    return sorted(present, key=_sort_key(key), reverse=descending) + empty


def wants_csv(request: Request) -> bool:
    """Whether the request asks for the table as CSV (the Export button)."""
    return request.query_params.get("format") == "csv"


def csv_response(rows: Sequence[dict[str, Any]], columns: Sequence[Column], name: str) -> Response:
    """The rows as a CSV download, with the table's columns first and every other field after."""
    keys = [c.key for c in columns]
    extra = [k for k in (rows[0] if rows else {}) if k not in keys]
    ordered = [{k: r.get(k, "") for k in keys + extra} for r in rows]
    body = to_csv(ordered) if ordered else ",".join(keys) + "\r\n"
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{download_name(name)}.csv"',
            "Cache-Control": "no-store",
        },
    )
