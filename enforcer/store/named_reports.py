"""Named discovery reports: one snapshot per upload, one continuous report per live source.

Every rollup row carries the id of the report it belongs to (migration 0014). A report is
chosen for a whole connection with `scoped` (the report queries in `enforcer.store.queries` read
only its rows; unscoped, they read every report: "all"). Deleting a snapshot deletes its rollup
rows and forgets its files' hashes, so the same files can be uploaded again.

Continuous sources are found by their `source` (``endpoint``: the devices' events;
``syslog HOST:PORT FORMAT``: one syslog collector) and created on first use.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from enforcer.errors import PermanentError
from enforcer.store.audit import record_change
from enforcer.store.tables.discovery import (
    APP_DAY,
    DEV_APP,
    DEV_DAY,
    HOUR,
    REPORT,
    UPLOAD,
    USER_APP,
    USER_DAY,
)

ALL = "all"
"""The selector of every report together (the default)."""
ENDPOINT = "endpoint"
"""The source (and default name) of the devices' events report."""
ENDPOINT_NAME = "endpoint events"
REPORT_OPTION = "discovery_report"
"""The connection execution option naming the report the queries read (`scoped`)."""
ROLLUP_TABLES = (APP_DAY, DEV_DAY, DEV_APP, USER_DAY, USER_APP, HOUR)


class ReportError(PermanentError):
    """A report that does not exist, a name already taken, a report that cannot be deleted."""


@dataclass(frozen=True)
class Report:
    """A named report and what it holds."""

    id: int
    name: str
    kind: str
    source: str
    format: str
    files: tuple[str, ...]
    records: int
    bad_lines: int
    first_seen: float
    last_seen: float
    created_at: dt.datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "source": self.source,
            "format": self.format,
            "files": list(self.files),
            "lines": self.records + self.bad_lines,
            "records": self.records,
            "badLines": self.bad_lines,
            "periodStart": _iso(self.first_seen),
            "periodEnd": _iso(self.last_seen),
            "createdAt": _aware(self.created_at).isoformat(timespec="seconds"),
        }


def _iso(epoch: float) -> str | None:
    if epoch <= 0 or epoch == float("inf"):
        return None
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="seconds")


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _report(row: Any) -> Report:
    return Report(
        id=row.id,
        name=row.name,
        kind=row.kind,
        source=row.source,
        format=row.format,
        files=tuple(f for f in row.files.split("\n") if f),
        records=row.records,
        bad_lines=row.bad_lines,
        first_seen=row.first_seen,
        last_seen=row.last_seen,
        created_at=row.created_at,
    )


def scoped(conn: Connection, report: Report | None) -> Connection:
    """Make the report queries on `conn` read only `report` (None: every report)."""
    return conn.execution_options(**{REPORT_OPTION: report.id if report else None})


def scope_of(conn: Connection) -> int | None:
    """The report id the queries on `conn` are limited to (None: all)."""
    value: int | None = conn.get_execution_options().get(REPORT_OPTION)
    return value


def list_reports(conn: Connection) -> list[Report]:
    """Every report, continuous sources first, then snapshots newest first."""
    query = select(REPORT).order_by(REPORT.c.kind, REPORT.c.created_at.desc(), REPORT.c.id.desc())
    return [_report(r) for r in conn.execute(query)]


def find_report(conn: Connection, selector: str | None) -> Report | None:
    """The report a selector names (its name, or its id), None for ``all``; ReportError when
    there is no such report (the message lists the names there are)."""
    if selector is None or selector.strip().lower() in ("", ALL):
        return None
    row = conn.execute(select(REPORT).where(REPORT.c.name == selector)).first()
    if row is None and selector.isdigit():
        row = conn.execute(select(REPORT).where(REPORT.c.id == int(selector))).first()
    if row is None:
        names = [r.name for r in list_reports(conn)]
        known = ", ".join(repr(n) for n in names[:20]) or "none yet"
        raise ReportError(f"no report named {selector!r} (reports: {known}; or 'all')")
    return _report(row)


def report_name(conn: Connection, report_id: int) -> str:
    """The name of the report numbered `report_id` ("" when there is none)."""
    return conn.execute(select(REPORT.c.name).where(REPORT.c.id == report_id)).scalar() or ""


def unique_name(conn: Connection, wanted: str) -> str:
    """`wanted`, or `wanted (2)`, `(3)`, ... when taken."""
    taken = set(conn.scalars(select(REPORT.c.name).where(REPORT.c.name.like(f"{wanted[:240]}%"))))
    name, n = wanted[:240], 1
    while name in taken:
        n += 1
        name = f"{wanted[:240]} ({n})"
    return name


def create_snapshot(
    engine: Engine, *, name: str, fmt: str, files: Sequence[str], exact: bool = False
) -> Report:
    """A new snapshot report for an upload; with `exact`, a name already taken is refused
    (a name the user chose), otherwise it is made unique."""
    with engine.begin() as conn:
        if exact and conn.execute(select(REPORT.c.id).where(REPORT.c.name == name)).first():
            raise ReportError(f"a report named {name!r} exists already: choose another name")
        final = name if exact else unique_name(conn, name)
        conn.execute(
            insert(REPORT).values(
                name=final, kind="snapshot", source="upload", format=fmt,
                files="\n".join(files), created_at=dt.datetime.now(dt.UTC),
            )
        )  # fmt: skip
        row = conn.execute(select(REPORT).where(REPORT.c.name == final)).one()
    return _report(row)


def continuous_report(conn: Connection, source: str, *, name: str | None = None) -> int:
    """The id of a continuous source's report, created on first use (named `name`, or the
    source itself)."""
    query = select(REPORT.c.id).where(REPORT.c.kind == "continuous", REPORT.c.source == source)
    found = conn.execute(query).scalar()
    if found is not None:
        return int(found)
    try:
        with conn.begin_nested():
            conn.execute(
                insert(REPORT).values(
                    name=unique_name(conn, name or source), kind="continuous", source=source,
                    created_at=dt.datetime.now(dt.UTC),
                )
            )  # fmt: skip
    except IntegrityError:
        pass  # created by a concurrent run
    return int(conn.execute(query).scalar_one())


def add_to_report(
    conn: Connection,
    report_id: int,
    *,
    records: int,
    bad_lines: int = 0,
    first_seen: float = float("inf"),
    last_seen: float = 0.0,
) -> None:
    """Count what was rolled up into a report and widen its period."""
    values: dict[str, Any] = {
        "records": REPORT.c.records + records,
        "bad_lines": REPORT.c.bad_lines + bad_lines,
    }
    if last_seen > 0 and first_seen != float("inf"):
        # Two-value min and max: least/greatest on PostgreSQL, min/max on SQLite.
        low, high = (
            (func.least, func.greatest)
            if conn.dialect.name == "postgresql"
            else (func.min, func.max)
        )
        # A new report's period is 0..0: its first value is taken as it is.
        values["first_seen"] = func.coalesce(
            func.nullif(low(REPORT.c.first_seen, first_seen), 0), first_seen
        )
        values["last_seen"] = high(REPORT.c.last_seen, last_seen)
    conn.execute(update(REPORT).where(REPORT.c.id == report_id).values(**values))


def delete_report(engine: Engine, selector: str, *, actor: str | None = None) -> Report:
    """Delete a snapshot report with its data (rollup rows and remembered files), audited as
    `actor`'s in the same transaction: discovery data asked to go never goes without a trace.
    Without `actor` nothing is audited: the upload path's own cleanup of an upload it refused
    (nothing of it was kept)."""
    with engine.begin() as conn:
        report = find_report(conn, selector)
        if report is None:
            raise ReportError("name the report to delete ('all' cannot be deleted)")
        if report.kind != "snapshot":
            raise ReportError(
                f"{report.name!r} is a continuous source's report: only snapshots are deleted"
            )
        for table in ROLLUP_TABLES:
            conn.execute(delete(table).where(table.c.report == report.id))
        conn.execute(delete(UPLOAD).where(UPLOAD.c.report == report.id))
        conn.execute(delete(REPORT).where(REPORT.c.id == report.id))
        if actor is not None:
            details = {"records": report.records, "files": list(report.files)}
            record_change(
                conn, actor=actor, action="discovery.delete", target=report.name, details=details
            )
    return report
