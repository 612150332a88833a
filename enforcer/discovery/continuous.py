"""The continuous report: devices' network events -> rollups and alerts.

The daemon runs `process_events` on a schedule; it reads the events after its cursor, rolls them
up like uploaded logs and raises an alert for each hit on an indicator with generateAlert, then
moves the cursor, all in one transaction, so each event is counted once even after a crash.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select

from enforcer.catalog import Catalog
from enforcer.discovery.aggregate import Aggregator
from enforcer.discovery.attribute import Attributor
from enforcer.discovery.records import Record
from enforcer.models import ALL_DEVICES, EventAction
from enforcer.store.discovery import (
    events_after,
    insert_alerts,
    merge_rollup_in,
    read_cursor,
    write_cursor,
)
from enforcer.store.tables.indicators import IndicatorRow

CURSOR = "network-events"
IND = IndicatorRow.__table__  # type: ignore[attr-defined]
ALERTING = {
    EventAction.BLOCKED.value,
    EventAction.WARNED.value,
    EventAction.BYPASSED.value,
    EventAction.AUDITED.value,
}


def process_events(engine: Engine, catalog: Catalog, *, batch: int = 20_000) -> int:
    """Roll up the events reported since the last run; returns how many were processed."""
    with engine.begin() as conn:
        last = read_cursor(conn, CURSOR)
        rows = events_after(conn, last, batch)
        if not rows:
            return 0
        aggregator = Aggregator(Attributor(catalog), max_keys=len(rows) + 1)
        aggregator.add_all(
            Record(
                time=r.time.timestamp(),
                host=r.domain,
                src_ip=r.local_ip,
                user=r.user,
                device=r.device_id,
                dest_ip=r.dest_ip,
                dest_port=r.dest_port,
                bytes_up=r.bytes_up,
                bytes_down=r.bytes_down,
                action="blocked" if r.action == EventAction.BLOCKED.value else "",
            )
            for r in rows
        )
        merge_rollup_in(conn, aggregator.rollup())
        insert_alerts(conn, _alerts(conn, rows))
        write_cursor(conn, CURSOR, rows[-1].id)
    return len(rows)


def _alerts(conn: Any, rows: list[Any]) -> list[dict[str, Any]]:
    hits = [r for r in rows if r.indicator and r.action in ALERTING]
    if not hits:
        return []
    values = sorted({r.indicator for r in hits})
    alerting: dict[str, str] = {}
    query = select(IND.c.value, IND.c.scope, IND.c.severity).where(
        IND.c.value.in_(values), IND.c.generate_alert.is_(True)
    )
    for value, scope, severity in conn.execute(query):
        # An all-devices indicator and a group one may both alert; keep the first severity seen.
        if scope == ALL_DEVICES or value not in alerting:
            alerting[value] = severity
    return [
        {
            "time": r.time,
            "device_id": r.device_id,
            "user": r.user,
            "domain": r.domain,
            "indicator": r.indicator,
            "app_id": r.app_id,
            "action": r.action,
            "severity": alerting[r.indicator],
            "status": "open",
            "event_id": r.id,
        }
        for r in hits
        if r.indicator in alerting
    ]
