"""Manual indicators: created and deleted one at a time by people; reconciliation never touches them.

Each create or delete is one transaction that makes its own revision, change-log entry and audit
row, so devices hear of it like of a policy change and the audit log says who made it.
"""

from __future__ import annotations

from sqlalchemy import Engine, delete, insert, select

from enforcer.errors import PermanentError
from enforcer.models import MANUAL, Indicator
from enforcer.plan.model import Change, ChangeAction
from enforcer.store.audit import record_change
from enforcer.store.by_name import indicator_of
from enforcer.store.feed import lock_revision, new_revision, write_change_log
from enforcer.store.indicators import row_values
from enforcer.store.lookup import UnknownIndicatorError
from enforcer.store.tables.indicators import IND, utcnow


class DuplicateIndicatorError(PermanentError):
    """A manual indicator for that value and scope exists already."""


def add_manual(engine: Engine, indicator: Indicator, *, actor: str) -> tuple[int, int]:
    """Create a manual indicator; returns (id, revision). Reconciliation never touches it."""
    with engine.begin() as conn:
        lock_revision(conn)
        exists = conn.execute(
            select(IND.c.id).where(
                IND.c.source == MANUAL,
                IND.c.scope == indicator.scope,
                IND.c.value == indicator.value,
            )
        ).first()
        if exists:
            raise DuplicateIndicatorError(
                f"a manual indicator for {indicator.value!r} in scope {indicator.scope or 'all'!r} "
                f"exists already (id {exists[0]})"
            )
        revision = new_revision(conn, MANUAL, (1, 0, 0), actor=actor)
        now = utcnow()
        values = row_values(indicator)
        values.update(source=MANUAL, bucket=-1, created_by=actor, created_at=now, updated_at=now)
        new_id = conn.execute(insert(IND).values(**values).returning(IND.c.id)).scalar_one()
        change = Change(ChangeAction.CREATE, indicator.key, None, indicator)
        write_change_log(conn, revision, MANUAL, [change])
        record_change(
            conn, actor=actor, action="indicator.add", target=indicator.value,
            details={"id": int(new_id), "revision": revision, **_facts(indicator)},
        )  # fmt: skip
    return int(new_id), revision


def delete_manual(engine: Engine, indicator_id: int, *, actor: str) -> int:
    """Delete a manual indicator by id; returns the new revision."""
    with engine.begin() as conn:
        lock_revision(conn)
        row = conn.execute(
            select(IND).where(IND.c.id == indicator_id, IND.c.source == MANUAL)
        ).first()
        if row is None:
            raise UnknownIndicatorError(f"no manual indicator with id {indicator_id}")
        revision = new_revision(conn, MANUAL, (0, 0, 1), actor=actor)
        conn.execute(delete(IND).where(IND.c.id == indicator_id))
        ind = indicator_of(row)
        write_change_log(conn, revision, MANUAL, [Change(ChangeAction.DELETE, ind.key, ind, None)])
        record_change(
            conn, actor=actor, action="indicator.remove", target=ind.value,
            details={"id": indicator_id, "revision": revision, **_facts(ind)},
        )  # fmt: skip
    return revision


def _facts(indicator: Indicator) -> dict[str, object]:
    """What the audit log keeps of an indicator besides its value."""
    return {
        "action": indicator.action.value,
        "scope": indicator.scope,
        "severity": indicator.severity.value,
        "title": indicator.title,
        "expires": indicator.expiration.isoformat() if indicator.expiration else None,
    }
