"""Stored indicators as people browse them: filtered pages, counts, exports, by id, by domain.

The admin API, the CLI and the console read indicators through these (any source); writes go
through `indicators.apply_plan`, `manual` and `expiry`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, func, select

from enforcer.errors import PermanentError
from enforcer.models import Action
from enforcer.store.bulk import CHUNK
from enforcer.store.by_name import StoredIndicator, stored_of
from enforcer.store.tables.indicators import IND


class UnknownIndicatorError(PermanentError):
    """No indicator with that id (or it is not a manual one)."""


def list_indicators(
    conn: Connection,
    *,
    source: str | None = None,
    scope: str | None = None,
    action: Action | None = None,
    app_id: str | None = None,
    contains: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[StoredIndicator]:
    """Stored indicators, filtered and paged, in value order."""
    query = select(IND).order_by(IND.c.value, IND.c.scope, IND.c.source)
    query = query.where(*_filters(source, scope, action, app_id, contains))
    return [stored_of(r) for r in conn.execute(query.limit(limit).offset(offset))]


def count_indicators(
    conn: Connection,
    *,
    source: str | None = None,
    scope: str | None = None,
    action: Action | None = None,
    app_id: str | None = None,
    contains: str | None = None,
) -> int:
    """How many stored indicators `list_indicators` pages through with the same filters."""
    query = select(func.count()).select_from(IND)
    query = query.where(*_filters(source, scope, action, app_id, contains))
    return int(conn.execute(query).scalar_one())


def _filters(
    source: str | None,
    scope: str | None,
    action: Action | None,
    app_id: str | None,
    contains: str | None,
) -> list[Any]:
    out: list[Any] = []
    if source is not None:
        out.append(IND.c.source == source)
    if scope is not None:
        out.append(IND.c.scope == scope)
    if action is not None:
        out.append(IND.c.action == action.value)
    if app_id is not None:
        out.append(IND.c.app_id == app_id)
    if contains:
        out.append(IND.c.value.contains(contains.lower(), autoescape=True))
    return out


def iter_indicators(conn: Connection) -> Iterator[StoredIndicator]:
    """Every stored indicator, streamed (exports)."""
    result = conn.execution_options(yield_per=CHUNK).execute(
        select(IND).order_by(IND.c.value, IND.c.scope, IND.c.source)
    )
    for row in result:
        yield stored_of(row)


def get_indicator(conn: Connection, indicator_id: int) -> StoredIndicator:
    """One stored indicator by id (UnknownIndicatorError if there is none)."""
    row = conn.execute(select(IND).where(IND.c.id == indicator_id)).first()
    if row is None:
        raise UnknownIndicatorError(f"no indicator with id {indicator_id}")
    return stored_of(row)


def indicator_counts(conn: Connection) -> list[tuple[str, str, int]]:
    """(action, source, count) of the stored indicators (the metrics' gauge)."""
    query = select(IND.c.action, IND.c.source, func.count()).group_by(IND.c.action, IND.c.source)
    return [(action, source, int(count)) for action, source, count in conn.execute(query)]
