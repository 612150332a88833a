"""Stored indicators for one name and its parents (`covering`), and the stored-row shapes.

`enforcer explain` asks for one name. Importing the store's table models (SQLModel, with
SQLAlchemy's ORM and a pydantic model per table) was a third of its start-up, so this module
reads the ``indicator`` table through a lightweight Core ``table()`` clause that names only the
columns it reads (tests/test_store.py checks them against the model,
`enforcer.store.tables.indicators.IND`). `StoredIndicator` and `indicator_of` live here so that
`lookup` and the writers share them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Boolean, Connection, DateTime, Integer, String, column, select, table

from enforcer.models import Action, Indicator, Severity

INDICATOR = table(
    "indicator",
    column("id", Integer),
    column("source", String),
    column("value", String),
    column("type", String),
    column("action", String),
    column("severity", String),
    column("scope", String),
    column("title", String),
    column("description", String),
    column("app_id", String),
    column("generate_alert", Boolean),
    column("expiration_time", DateTime(timezone=True)),
    column("created_by", String),
    column("created_at", DateTime(timezone=True)),
    column("updated_at", DateTime(timezone=True)),
)
"""The ``indicator`` columns an indicator's stored form needs (a subset of the model's)."""


@dataclass(frozen=True, slots=True)
class StoredIndicator:
    """An indicator as stored, with its id and source."""

    id: int
    source: str
    indicator: Indicator
    created_by: str
    created_at: dt.datetime
    updated_at: dt.datetime


def utc(value: dt.datetime | None) -> dt.datetime | None:
    """A stored time as aware UTC (SQLite returns it without an offset)."""
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def indicator_of(row: Any) -> Indicator:
    """The `Indicator` of a stored row (times as UTC)."""
    return Indicator(
        value=row.value,
        type=row.type,
        action=Action(row.action),
        severity=Severity(row.severity),
        scope=row.scope,
        title=row.title,
        description=row.description,
        app_id=row.app_id,
        generate_alert=bool(row.generate_alert),
        expiration=utc(row.expiration_time),
    )


def stored_of(row: Any) -> StoredIndicator:
    """The `StoredIndicator` of a row of the ``indicator`` table."""
    created, updated = utc(row.created_at), utc(row.updated_at)
    assert created is not None and updated is not None
    return StoredIndicator(
        id=row.id,
        source=row.source,
        indicator=indicator_of(row),
        created_by=row.created_by,
        created_at=created,
        updated_at=updated,
    )


def covering(conn: Connection, domain: str) -> list[StoredIndicator]:
    """Indicators for the domain itself and each of its parents, most specific first."""
    names = [domain]
    while "." in names[-1]:
        names.append(names[-1].split(".", 1)[1])
    query = select(INDICATOR).where(INDICATOR.c.value.in_(names))
    rows = [stored_of(r) for r in conn.execute(query)]
    return sorted(rows, key=lambda s: (names.index(s.indicator.value), s.source, s.indicator.scope))
