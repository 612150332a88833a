"""A roll-up of log records into its named report, with the alert policies checked on what it
brought, in one transaction: what an upload (`enforcer.discovery.ingest`) and a syslog
collector (`SyslogBatches`) do with each batch.

The devices' events do the same in `enforcer.discovery.continuous`, which also has their raw
rows. Either way an alert names the report whose data raised it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from sqlalchemy import Engine

from enforcer.catalog import Catalog
from enforcer.discovery import alert_facts
from enforcer.discovery.aggregate import Aggregator
from enforcer.discovery.alert_policies import evaluate
from enforcer.discovery.formats import Parser
from enforcer.discovery.records import BadLine, Record
from enforcer.policy.schema import AlertPolicy
from enforcer.rollup import Rollup
from enforcer.store.alerts import raise_policy_alerts
from enforcer.store.named_reports import add_to_report
from enforcer.store.rollups import merge_rollup_in


def merge_logs(
    engine: Engine,
    catalog: Catalog,
    rollup: Rollup,
    *,
    report: int,
    report_name: str,
    policies: Sequence[AlertPolicy] = (),
    fresh: bool = False,
) -> int:
    """Merge a roll-up of log records into the report numbered `report` and raise what the
    alert `policies` find in it, naming the report (`report_name`) on the alerts; returns how
    many alerts were opened. Without policies this is the merge alone. `fresh`: the report
    has no rows yet (`merge_rollup_in`)."""
    with engine.begin() as conn:
        known = alert_facts.apps_before(conn, rollup, policies)
        merge_rollup_in(conn, rollup, report=report, fresh=fresh)
        if not policies:
            return 0
        facts = alert_facts.gather_logs(conn, catalog, policies, rollup=rollup, known=known)
        hits = [asdict(hit) for hit in evaluate(policies, facts)]
        return raise_policy_alerts(conn, hits, report=report_name)


@dataclass
class SyslogBatches:
    """A syslog collector's report: the lines received since the last `flush`, parsed, rolled
    up and merged with the alert policies checked, each flush in one transaction."""

    engine: Engine
    catalog: Catalog
    parse: Parser
    aggregator: Aggregator
    report: int
    report_name: str
    policies: Callable[[], Sequence[AlertPolicy]] = tuple
    """The alert policies now (asked at each flush: the policy repo may change meanwhile)."""
    pending: list[str] = field(default_factory=list)
    records: int = 0
    bad: int = 0
    alerts: int = 0

    def add(self, payload: str) -> None:
        """A line received (the syslog message's payload)."""
        self.pending.append(payload)

    def flush(self) -> int:
        """Roll the lines received up into the report; returns how many lines there were."""
        lines, self.pending = self.pending, []
        records: list[Record] = []
        for item in self.parse(lines):
            if isinstance(item, BadLine):
                self.bad += 1
            else:
                records.append(item)
        self.aggregator.add_all(records)
        self.records += len(records)
        self.alerts += merge_logs(
            self.engine, self.catalog, self.aggregator.rollup(), report=self.report,
            report_name=self.report_name, policies=self.policies(),
        )  # fmt: skip
        if records:
            with self.engine.begin() as conn:
                add_to_report(
                    conn, self.report, records=len(records), bad_lines=len(lines) - len(records),
                    first_seen=min(r.time for r in records),
                    last_seen=max(r.time for r in records),
                )  # fmt: skip
        return len(lines)
