"""The audit row of a log upload (``enforcer discovery upload``, ``POST /discovery/upload``).

An upload adds a snapshot report that changes what the discovery reports, alerts and impact
previews say, so who uploaded what is in the audit log beside the other changes. Its batches
commit one by one (a million-line log is not one transaction), so the row is written once the
last of them is in (`enforcer.store.audit.record_edit`).
"""

from __future__ import annotations

from sqlalchemy import Engine

from enforcer.discovery.ingest import UploadStats
from enforcer.store.audit import record_edit


def record_upload(engine: Engine, stats: UploadStats, fmt: str, *, actor: str) -> None:
    """Record an upload that kept data, as `actor`'s; one that kept nothing (every file
    uploaded before, or no line parsed: its report is gone already) changed nothing."""
    if not stats.report or not stats.records:
        return
    record_edit(
        engine,
        actor=actor,
        action="discovery.upload",
        target=stats.report,
        details={
            "format": fmt,
            "files": stats.files,
            "records": stats.records,
            "badLines": stats.bad_lines,
            "skipped": [name for name, _ in stats.skipped],
            "alerts": stats.alerts,
        },
    )
