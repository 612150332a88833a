"""The audit log (``/console/audit``): who changed what and when, newest first, filtered by
actor and action, paged, and exported as CSV. Any signed-in account may read it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from enforcer.console import tables as t
from enforcer.console.web import PREFIX, SignedIn, render, state
from enforcer.store.audit import ACTIONS, AuditEntry, audit_actors, list_audit

router = APIRouter(prefix=PREFIX, include_in_schema=False)

AUDIT_COLUMNS = (
    t.Column("time", "Time (UTC)", sortable=False),
    t.Column("actor", "Actor", sortable=False),
    t.Column("action", "Action", sortable=False),
    t.Column("target", "Target", sortable=False),
    t.Column("details", "Details", sortable=False),
)
ACTION_FILTERS = tuple(sorted({a.split(".")[0] for a in ACTIONS})) + ACTIONS
"""What the action filter offers: each kind (``alert``) and each action (``alert.close``)."""
CSV_LIMIT = 1_000_000


@router.get("/audit")
def audit(request: Request, session: SignedIn) -> Response:
    actor = request.query_params.get("actor") or None
    action = request.query_params.get("action") or None
    action = action if action in ACTION_FILTERS else None
    page = t.page_number(request)
    with state(request).engine.connect() as conn:
        if t.wants_csv(request):
            entries = list_audit(conn, actor=actor, action=action, limit=CSV_LIMIT)
            return t.csv_response([e.as_row() for e in entries], AUDIT_COLUMNS, "audit")
        entries = list_audit(
            conn, actor=actor, action=action, limit=t.PAGE_SIZE + 1,
            offset=(page - 1) * t.PAGE_SIZE,
        )  # fmt: skip
        actors = audit_actors(conn)
    more = len(entries) > t.PAGE_SIZE
    rows = [_row(e) for e in entries[: t.PAGE_SIZE]]
    table = t.Table(
        AUDIT_COLUMNS, rows, len(rows), page, page + 1 if more else page, "", False, "audit"
    )
    return render(
        request, "audit.html", session, section="audit", table=table, actors=actors,
        actor=actor or "", action=action or "", actions=ACTION_FILTERS,
    )  # fmt: skip


def _row(entry: AuditEntry) -> dict[str, Any]:
    details = "; ".join(f"{k}: {_text(v)}" for k, v in sorted(entry.details.items()))
    return {**entry.as_json(), "time": f"{entry.time:%Y-%m-%d %H:%M:%S}", "details": details}


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "none"
    return "—" if value is None or value == "" else str(value)
