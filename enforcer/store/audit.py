"""The audit log: who changed what, and when.

Every change a person or the daemon makes records one row: a policy apply (its revision and
counts), a manual indicator added or removed, an alert acknowledged or closed, a device's groups
assigned or its hostname approved, an account added, disabled or given a new token, a tag or a
custom app set in the console, a log uploaded into a snapshot report or a report deleted with
its data, the log's own old rows pruned. The row is written by `record_change` on the connection of the
change itself, inside its transaction: a change that fails or is rolled back leaves no row, and
a change never lands without its row. (The console's tag and custom-app edits change a policy
file, not the store: `record_edit` writes their row once the edit is kept; an upload, whose
batches commit one by one, gets its row from `record_edit` once its last batch is in.)

Retention: `prune_audit` deletes rows older than ``ENFORCER_AUDIT_RETENTION_DAYS`` (730 by
default, 0 keeps them for ever); the daemon's expiry job runs it, and the pruning records a row
of its own (how many rows, up to when), so a gap in the log always says why it is there.

Actors are account names (API and console), the OS user of a CLI command (or its
``--actor``), and for the daemon's applies the author of the policy directory's HEAD commit
(``Name <email>``) when the directory is a git checkout, else ``daemon``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, or_, select

from enforcer.store.tables.accounts import ACTOR_MAX, AUDIT, TARGET_MAX
from enforcer.store.tables.indicators import utcnow

ACTIONS = (
    "policy.apply",
    "indicator.add",
    "indicator.remove",
    "alert.acknowledge",
    "alert.close",
    "device.groups",
    "device.approve",
    "account.add",
    "account.disable",
    "account.rotate",
    "console.tag",
    "console.custom_app",
    "discovery.upload",
    "discovery.delete",
    "audit.prune",
)
"""Every action the audit log records (a filter may name one, or a prefix such as ``alert``)."""

_ACTION_FILTER = re.compile(r"[a-z_]+(\.[a-z_]+)?")
_RELATIVE = re.compile(r"(\d{1,6})([mhd])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


@dataclass(frozen=True)
class AuditEntry:
    """One recorded change."""

    id: int
    time: dt.datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        """The entry as the API and ``enforcer audit list --json`` show it."""
        return {
            "id": self.id,
            "time": self.time.isoformat().replace("+00:00", "Z"),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "details": self.details,
        }

    def as_row(self) -> dict[str, Any]:
        """The entry as one flat CSV row (details as compact JSON)."""
        row = self.as_json()
        row["details"] = json.dumps(self.details, sort_keys=True, separators=(",", ":"))
        return row


def record_change(
    conn: Connection,
    *,
    actor: str,
    action: str,
    target: str = "",
    details: Mapping[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> None:
    """Record a change on `conn`, inside the caller's transaction (so the row and the change
    commit or roll back together)."""
    if action not in ACTIONS:
        raise ValueError(f"not an audited action: {action!r}")
    conn.execute(
        insert(AUDIT).values(
            time=now or utcnow(),
            actor=(actor or "unknown")[:ACTOR_MAX],
            action=action,
            target=target[:TARGET_MAX],
            details=json.dumps(dict(details or {}), sort_keys=True, default=str),
        )
    )


def record_edit(
    engine: Engine,
    *,
    actor: str,
    action: str,
    target: str = "",
    details: Mapping[str, Any] | None = None,
) -> None:
    """Record a change that is not a store write (a console edit of a policy file), in a
    transaction of its own; call it once the change is kept."""
    with engine.begin() as conn:
        record_change(conn, actor=actor, action=action, target=target, details=details)


def prune_audit(
    engine: Engine, older_than: dt.datetime, *, actor: str, now: dt.datetime | None = None
) -> int:
    """Delete the rows recorded before `older_than` and record that, in one transaction;
    returns how many were deleted (nothing is recorded when there were none)."""
    with engine.begin() as conn:
        deleted = conn.execute(delete(AUDIT).where(AUDIT.c.time < older_than)).rowcount or 0
        if deleted:
            record_change(
                conn,
                actor=actor,
                action="audit.prune",
                details={"deleted": deleted, "older_than": older_than.isoformat()},
                now=now,
            )
    return deleted


def parse_since(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """`text` as the start of a time range: ``30m``, ``24h``, ``7d`` back from now, or an ISO
    8601 date or time (UTC when it names no zone). ValueError says what is accepted."""
    text = text.strip()
    relative = _RELATIVE.fullmatch(text)
    if relative:
        span = dt.timedelta(**{_UNITS[relative.group(2)]: int(relative.group(1))})
        return (now or utcnow()) - span
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a time span (30m, 24h, 7d) nor an ISO 8601 date or time "
            "(2026-12-01, 2026-12-01T09:30:00Z)"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def check_action_filter(action: str) -> str:
    """`action` as a filter (an action, or the part before its dot: ``alert``); ValueError
    naming the known actions otherwise."""
    if not _ACTION_FILTER.fullmatch(action) or not any(
        a == action or a.startswith(f"{action}.") for a in ACTIONS
    ):
        raise ValueError(f"{action!r} is not an audited action; one of: {', '.join(ACTIONS)}")
    return action


def list_audit(
    conn: Connection,
    *,
    since: dt.datetime | None = None,
    actor: str | None = None,
    action: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[AuditEntry]:
    """Recorded changes, newest first, filtered by time, actor (exact) and action (an action or
    its prefix: ``alert`` is every ``alert.*``), and paged."""
    query = select(AUDIT).order_by(AUDIT.c.id.desc())
    if since is not None:
        query = query.where(AUDIT.c.time >= since)
    if actor:
        query = query.where(AUDIT.c.actor == actor)
    if action:
        check_action_filter(action)
        query = query.where(or_(AUDIT.c.action == action, AUDIT.c.action.like(f"{action}.%")))
    rows = conn.execute(query.limit(limit).offset(offset))
    return [
        AuditEntry(
            id=int(r.id),
            time=_aware(r.time),
            actor=r.actor,
            action=r.action,
            target=r.target,
            details=json.loads(r.details or "{}"),
        )
        for r in rows
    ]


def audit_actors(conn: Connection, limit: int = 500) -> list[str]:
    """The actors that have changed something, by name (for a filter's choices)."""
    query = (
        select(AUDIT.c.actor).group_by(AUDIT.c.actor).order_by(func.lower(AUDIT.c.actor))
    ).limit(limit)
    return list(conn.scalars(query))


def _aware(value: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes; the store writes UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
