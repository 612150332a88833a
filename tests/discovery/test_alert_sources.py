"""Alert policies raise on every data source, on both back ends: an upload (`ingest_files`, as
`enforcer discovery upload` and the upload route call it) and a syslog collector's batches
(`SyslogBatches`, what `enforcer discovery collect` runs), each alert naming its report; and
users are named as the reports name them in every alert (identity folding)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import Engine

from enforcer.catalog import Catalog
from enforcer.discovery.aggregate import Aggregator
from enforcer.discovery.attribute import Attributor
from enforcer.discovery.continuous import process_events
from enforcer.discovery.formats import parser_for
from enforcer.discovery.identity import UserNames
from enforcer.discovery.ingest import ingest_files
from enforcer.discovery.merge import SyslogBatches
from enforcer.policy.schema import AlertPolicy
from enforcer.store.alerts import list_alerts
from enforcer.store.devices import enroll_device
from enforcer.store.events import EventRecord, store_batch
from enforcer.store.named_reports import continuous_report
from enforcer.store.trust import record_enrolment_trust

MB = 1_000_000
MAP = "time=ts,host=host,device=machine,user=user,bytes_up=up,action=action"
DEVICE = "device"
POLICIES = [
    AlertPolicy(name="new risky", when="new_app", min_risk=7, severity="high"),
    AlertPolicy(name="spike", when="upload_spike", factor=10, min_upload=MB),
    AlertPolicy(name="turned high", when="device_high_risk"),
    AlertPolicy(name="blocked", when="blocked_app"),
]


@pytest.fixture
def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _log(path: Path, rows: list[tuple[dt.datetime, str, str, str, int, str]]) -> Path:
    lines = ["ts,host,machine,user,up,action"]
    lines += [f"{t.timestamp():.0f},{h},{m},{u},{up},{a}" for t, h, m, u, up, a in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _alerts(engine: Engine, policy: str | None = None) -> list[dict[str, object]]:
    with engine.connect() as conn:
        return sorted(list_alerts(conn, policy=policy), key=lambda a: str(a["policy"]))


def test_an_upload_raises_each_kind_of_alert_policy_naming_its_report(
    engine: Engine, catalog: Catalog, tmp_path: Path, now: dt.datetime
) -> None:
    history = [
        (now - dt.timedelta(days=d), "boxy.example", "pc-01", "alice", MB, "allowed")
        for d in range(1, 31)
    ]
    ingest_files(
        engine, catalog, [_log(tmp_path / "history.csv", history)], "csv", mapping=MAP,
        report_name="history", policies=[],
    )  # fmt: skip
    assert _alerts(engine) == []  # before the policies existed
    today = [
        (now, "boxy.example", "pc-01", "CONTOSO\\alice", 20 * MB, "allowed"),
        (now, "pastey.example", "pc-02", "bob", 10, "allowed"),
        (now, "tunnelr.example", "pc-02", "bob", 10, "allowed"),
        (now, "megashare.example", "pc-01", "alice@contoso.com", 10, "TCP_DENIED"),
        (now, "megashare.example", "pc-01", "alice", 10, "deny"),
    ]
    stats = ingest_files(
        engine, catalog, [_log(tmp_path / "today.csv", today)], "csv", mapping=MAP,
        report_name="proxy today", policies=POLICIES,
    )  # fmt: skip
    alerts = _alerts(engine)
    assert stats.alerts == len(alerts)
    found = {(a["policy"], a["machine"], a["user"], a["app_id"], a["hits"]) for a in alerts}
    assert found == {
        ("blocked", "pc-01", "alice", "megashare", 2),  # two forms of alice, one user
        ("new risky", "", "", "megashare", 1),
        ("new risky", "", "", "pastey", 1),
        ("new risky", "", "", "tunnelr", 1),
        ("spike", "pc-01", "", "boxy", 1),  # 20 MB against a median of 1 MB
        ("turned high", "pc-01", "", "", 1),  # its spike and a new risky app
        ("turned high", "pc-02", "", "", 1),  # two new risky apps today
    }
    assert {a["report"] for a in alerts} == {"proxy today"}
    again = [(now, "megashare.example", "pc-01", "alice", 10, "deny")]
    ingest_files(
        engine, catalog, [_log(tmp_path / "later.csv", again)], "csv", mapping=MAP,
        report_name="proxy later", policies=POLICIES,
    )  # fmt: skip
    (blocked,) = _alerts(engine, "blocked")  # still one open alert, now counted 3 times
    assert (blocked["hits"], blocked["report"]) == (3, "proxy later")


def test_a_scoped_policy_watches_a_log_machine_through_its_trusted_device(
    engine: Engine, catalog: Catalog, tmp_path: Path, now: dt.datetime
) -> None:
    for device_id, hostname, trusted in (("d1", "pc-fin", True), ("d2", "pc-other", False)):
        enroll_device(
            engine, device_id=device_id, hostname=hostname, os="Linux", user="alice",
            local_ips=("10.0.0.7",), groups=("finance",),
        )  # fmt: skip
        record_enrolment_trust(engine, device_id, group_secret=trusted)
    policy = AlertPolicy(name="finance blocked", when="blocked_app", scope=["finance"])
    rows = [
        (now, "megashare.example", host, "alice", 10, "deny")
        for host in ("pc-fin", "pc-other", "pc-logs-only")
    ]
    ingest_files(
        engine, catalog, [_log(tmp_path / "fw.csv", rows)], "csv", mapping=MAP, policies=[policy]
    )
    # pc-other's device is not trusted: the log machine of that name is not the device's.
    assert [a["machine"] for a in _alerts(engine)] == ["pc-fin"]


def test_a_syslog_collectors_batches_raise_alerts_naming_its_report(
    engine: Engine, catalog: Catalog, now: dt.datetime
) -> None:
    with engine.begin() as conn:
        report = continuous_report(conn, "syslog 127.0.0.1:5514 squid", name="fw syslog")
    policies = [AlertPolicy(name="blocked", when="blocked_app", severity="high")]
    batches = SyslogBatches(
        engine, catalog, parser_for("squid"), Aggregator(Attributor(catalog), users=UserNames()),
        report=report, report_name="fw syslog", policies=lambda: policies,
    )  # fmt: skip
    line = (
        f"{now.timestamp():.3f} 5 10.1.2.20 TCP_DENIED/403 300 CONNECT megashare.example:443 "
        "CONTOSO\\Carol HIER_NONE/- -"
    )
    batches.add(line)
    batches.add("not a squid line")
    assert batches.flush() == 2
    batches.add(line)
    batches.flush()
    (alert,) = _alerts(engine)
    assert (alert["machine"], alert["user"], alert["app_id"], alert["hits"]) == (
        "10.1.2.20", "carol", "megashare", 2,
    )  # fmt: skip
    assert (alert["report"], alert["severity"], batches.bad) == ("fw syslog", "high", 1)


def test_device_events_name_users_as_the_reports_do_in_alerts(
    engine: Engine, catalog: Catalog, now: dt.datetime
) -> None:
    enroll_device(
        engine, device_id="d1", hostname="pc-01", os="Linux", user="alice",
        local_ips=("10.0.0.7",), groups=(),
    )  # fmt: skip
    record_enrolment_trust(engine, "d1", group_secret=True)

    def hit(user: str) -> EventRecord:
        return EventRecord(
            now, "pc", user, "10.0.0.7", "megashare.example", "192.0.2.9", 443, 10, 10,
            "blocked", "", "megashare", "proxy",
        )  # fmt: skip

    store_batch(engine, device_id="d1", batch_id="b1", events=[hit("CONTOSO\\alice"), hit("alice")])
    policy = AlertPolicy(name="blocked", when="blocked_app")
    while process_events(engine, catalog, policies=[policy]):
        pass
    (alert,) = _alerts(engine)
    assert (alert["user"], alert["hits"], alert["report"]) == ("alice", 2, "endpoint events")
    assert "user seen as CONTOSO\\alice" in str(alert["details"])
