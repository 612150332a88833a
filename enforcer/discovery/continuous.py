"""The continuous report: devices' network events -> rollups and alerts.

The daemon runs `process_events` on a schedule; it takes the oldest stored batches of events off
the queue of batches not rolled up yet, rolls their events up like uploaded logs, raises an
alert for each hit on an indicator with generateAlert and checks the policy repo's alert
policies against what it rolled up (`enforcer.discovery.alert_policies`), all in one
transaction, so each event is counted once even after a crash, and even when batches commit in
another order than their ids (`enforcer.store.events` says why an id cursor could not do that).

A device's events are rolled up under the hostname the device last reported (at enrolment or
with ``PUT /api/v1/devices/self``), the name uploaded logs give the same machine (a firewall's
source hostname, a proxy's device name): a hostname seen from a shim and in logs is one machine
in the reports when the server trusts the device (`enforcer.store.trust`: enrolled with a
group's secret or approved by an admin); an untrusted device is the machine ``hostname (device
ID)``, so it cannot take over a log machine's history. The device's record is used rather than
each event's own hostname field, so one device names one machine at a time. A device without a
hostname is named by its id. Each machine's sources are kept (``device ID``, ``logs``). The enrolled
device ids behind a machine name are listed on its report
(`enforcer.discovery.reports.machine_report`).

The devices' events are one named report, ``endpoint events`` (`enforcer.store.named_reports`),
which the alerts they raise name. Alerts name users as the reports do (`alice` for the
`CONTOSO\\alice` an event carried, which the alert's details keep).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from sqlalchemy import Engine

from enforcer.catalog import Catalog
from enforcer.config import get_settings
from enforcer.discovery import alert_facts
from enforcer.discovery.aggregate import Aggregator, device_sources
from enforcer.discovery.alert_policies import evaluate
from enforcer.discovery.attribute import Attributor
from enforcer.discovery.identity import UserNames, load_user_names
from enforcer.discovery.records import Record
from enforcer.models import EventAction
from enforcer.policy.schema import AlertPolicy
from enforcer.store.alerts import (
    alert_severity,
    alerting_severities,
    insert_alerts,
    raise_policy_alerts,
)
from enforcer.store.devices import groups_of
from enforcer.store.events import events_of_batches, take_pending_batches
from enforcer.store.named_reports import (
    ENDPOINT,
    ENDPOINT_NAME,
    add_to_report,
    continuous_report,
    report_name,
)
from enforcer.store.rollups import merge_rollup_in
from enforcer.store.trust import machine_names_of

ALERTING = {
    EventAction.BLOCKED.value,
    EventAction.WARNED.value,
    EventAction.BYPASSED.value,
    EventAction.AUDITED.value,
}


def process_events(
    engine: Engine,
    catalog: Catalog,
    *,
    batch: int = 20_000,
    policies: Sequence[AlertPolicy] = (),
) -> int:
    """Roll up the events of the oldest batches not rolled up yet, whole batches up to about
    `batch` events, then check the alert `policies` against what was rolled up (in the same
    transaction); returns how many events were processed (0: none are waiting)."""
    with engine.begin() as conn:
        rows = events_of_batches(conn, take_pending_batches(conn, events=batch))
        if not rows:
            return 0
        machines = machine_names_of(conn, {r.device_id for r in rows})
        users = load_user_names(get_settings())
        aggregator = Aggregator(
            Attributor(catalog), max_keys=len(rows) + 1, users=users, source=None
        )
        aggregator.add_all(
            Record(
                time=r.time.timestamp(),
                host=r.domain,
                src_ip=r.local_ip,
                user=r.user,
                device=machines.get(r.device_id, r.device_id),
                dest_ip=r.dest_ip,
                dest_port=r.dest_port,
                bytes_up=r.bytes_up,
                bytes_down=r.bytes_down,
                action="blocked" if r.action == EventAction.BLOCKED.value else "",
            )
            for r in rows
        )
        rollup = aggregator.rollup()
        rollup.sources = device_sources(rows, machines)
        known = alert_facts.apps_before(conn, rollup, policies)
        report = continuous_report(conn, ENDPOINT, name=ENDPOINT_NAME)
        merge_rollup_in(conn, rollup, report=report)
        add_to_report(
            conn, report, records=len(rows),
            first_seen=min(r.time for r in rows).timestamp(),
            last_seen=max(r.time for r in rows).timestamp(),
        )  # fmt: skip
        name = report_name(conn, report)  # "endpoint events", unless a snapshot took that name
        insert_alerts(conn, _alerts(conn, rows, users, name))
        if policies:
            groups = groups_of(conn, {r.device_id for r in rows})
            facts = alert_facts.gather(
                conn, catalog, policies, rollup=rollup, known=known, rows=rows,
                machines=machines, groups=groups, users=users,
            )  # fmt: skip
            hits = [asdict(hit) for hit in evaluate(policies, facts)]
            raise_policy_alerts(conn, hits, report=name)
    return len(rows)


def _alerts(conn: Any, rows: list[Any], users: UserNames, report: str) -> list[dict[str, Any]]:
    """The indicator alerts of these events: the user as the reports name them (one open
    alert per indicator, device and user, whatever form each event gave), with the raw form
    in the details when it differs."""
    hits = [r for r in rows if r.indicator and r.action in ALERTING]
    if not hits:
        return []
    alerting = alerting_severities(conn, values=[r.indicator for r in hits])
    hits = [r for r in hits if r.indicator in alerting]
    groups = groups_of(conn, {r.device_id for r in hits}) if hits else {}
    alerts = []
    for r in hits:
        # A group-scoped alerting indicator alerts for the devices in that group only.
        severity = alert_severity(alerting[r.indicator], groups.get(r.device_id, ()))
        if severity is None:
            continue
        user = users(r.user) if r.user else ""
        alerts.append(
            {
                "time": r.time,
                "device_id": r.device_id,
                "user": user,
                "details": f"user seen as {r.user}" if r.user != user else "",
                "report": report,
                "domain": r.domain,
                "indicator": r.indicator,
                "app_id": r.app_id,
                "action": r.action,
                "severity": severity,
                "status": "open",
                "event_id": r.id,
            }
        )
    return alerts
