"""Machines by hostname and top processes, on both back ends.

A shim's events roll up under the hostname its device reported, so the same hostname in uploaded
logs is the same machine; the machine's report lists the enrolled device behind it and the
programs behind its traffic, read from the raw events (only intercepted traffic names them).
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Engine, text

from enforcer.catalog import load_catalog
from enforcer.discovery import reports
from enforcer.discovery.aggregate import Aggregator
from enforcer.discovery.attribute import Attributor
from enforcer.discovery.continuous import process_events
from enforcer.discovery.records import Record
from enforcer.store.devices import enroll_device, record_applied, update_facts
from enforcer.store.events import EventRecord, store_batch
from enforcer.store.processes import top_processes, top_processes_query
from enforcer.store.rollups import merge_rollup
from enforcer.store.trust import approve_device
from tests.api.helpers import apply_indicators, block

STALE_AFTER = dt.timedelta(minutes=10)


def event(
    when: dt.datetime,
    process: str,
    domain: str = "www.dropbox.com",
    up: int = 100,
    user: str = "alice",
) -> EventRecord:
    app = "dropbox" if "dropbox" in domain else ""
    return EventRecord(
        when, "spoofed-name", user, "10.0.0.7", domain, "192.0.2.9", 443, up, 1000, "allowed",
        "", app, "intercept", pid=42, process_name=process, process_path=f"/usr/bin/{process}",
    )  # fmt: skip


@pytest.fixture
def seeded(engine: Engine) -> dt.datetime:
    """pc-07: an enrolled shim device (dev-7) plus a proxy log naming the same hostname."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    revision = apply_indicators(engine, [block("mega.example")])
    enroll_device(
        engine, device_id="dev-7", hostname="old-name", os="Linux", user="alice",
        local_ips=("10.0.0.7",), groups=("eng",),
    )  # fmt: skip
    update_facts(
        engine, "dev-7", hostname="pc-07", os="Debian GNU/Linux", os_version="12",
        agent_version="0.1.0", user="alice", local_ips=["10.0.0.7"],
    )  # fmt: skip
    approve_device(engine, "dev-7")  # trusted: one machine with pc-07 of the logs
    record_applied(engine, "dev-7", revision)
    events = [event(now, "firefox") for _ in range(3)]
    events += [event(now, "curl", up=50_000), event(now, "curl", user="bob")]
    events.append(event(now, "", domain="github.com"))  # not intercepted: no process
    events.append(event(now, "slack", domain="slack.com"))
    # 40 days ago: outside a 7-day report.
    events.append(event(now - dt.timedelta(days=40), "wget"))
    store_batch(engine, device_id="dev-7", batch_id="b1", events=events)
    process_events(engine, load_catalog())
    aggregator = Aggregator(Attributor(load_catalog()))
    aggregator.add_all(
        [Record(time=now.timestamp(), host="www.dropbox.com", src_ip="10.0.0.7", user="alice",
                device="pc-07", bytes_up=1, bytes_down=1)] * 2
    )  # fmt: skip
    merge_rollup(engine, aggregator.rollup())
    return now


def test_a_hostname_from_a_shim_and_from_logs_is_one_machine(
    engine: Engine, seeded: dt.datetime
) -> None:
    first, last = reports.day_range(7)
    with engine.connect() as conn:
        rows = reports.machines_report(conn, load_catalog(), first, last, stale_after=STALE_AFTER)
        machine = reports.machine_report(
            conn, load_catalog(), "pc-07", first, last, stale_after=STALE_AFTER
        )
    assert [r["device"] for r in rows] == ["pc-07"], "not dev-7, not the events' own hostname"
    [row] = rows
    assert row["transactions"] == 7 + 2, "seven recent events and two log lines"
    assert row["os"] == "Debian GNU/Linux 12" and row["groups"] == ["eng"]
    assert row["appliedRevision"] is not None and row["stale"] is False
    assert row["timeToEnforce"] is not None and row["timeToEnforce"] >= 0
    assert [d["deviceId"] for d in machine["enrolledDevices"]] == ["dev-7"]
    assert machine["enrolledDevices"][0]["agentVersion"] == "0.1.0"


def test_machine_top_processes_rank_by_requests_in_the_range(
    engine: Engine, seeded: dt.datetime
) -> None:
    first, last = reports.day_range(7)
    with engine.connect() as conn:
        machine = reports.machine_report(
            conn, load_catalog(), "pc-07", first, last, stale_after=STALE_AFTER
        )
    top = machine["topProcesses"]
    assert [(p["process"], p["requests"]) for p in top] == [
        ("firefox", 3), ("curl", 2), ("slack", 1),
    ]  # fmt: skip
    curl = top[1]
    assert curl["path"] == "/usr/bin/curl" and curl["upload"] == 50_100 and curl["users"] == 2
    assert curl["lastSeen"] == seeded.isoformat(timespec="seconds")
    with engine.connect() as conn:
        month = reports.machine_report(
            conn, load_catalog(), "pc-07", *reports.day_range(60), stale_after=STALE_AFTER
        )
    assert "wget" in [p["process"] for p in month["topProcesses"]]


def test_app_top_processes_and_the_app_report(engine: Engine, seeded: dt.datetime) -> None:
    first, last = reports.day_range(7)
    with engine.connect() as conn:
        report = reports.app_report(conn, load_catalog(), "dropbox", first, last)
        by_bytes = top_processes(
            conn,
            start=seeded - dt.timedelta(days=1),
            end=seeded + dt.timedelta(days=1),
            app_id="dropbox",
            by="bytes",
        )
        with pytest.raises(reports.NotFoundError):
            reports.app_report(conn, load_catalog(), "no-such-app", first, last)
    assert [p["process"] for p in report["topProcesses"]] == ["firefox", "curl"]
    assert report["machines"] == ["pc-07"] and report["transactions"] == 5 + 2
    assert [p.process_name for p in by_bytes] == ["curl", "firefox"]


def test_an_enrolled_machine_without_traffic_has_a_report(engine: Engine) -> None:
    enroll_device(
        engine, device_id="dev-9", hostname="quiet-pc", os="Linux", user="", local_ips=(),
        groups=(),
    )  # fmt: skip
    first, last = reports.day_range(7)
    # Not trusted yet: its machine is not the bare hostname, and the error says which it is.
    with (
        engine.connect() as conn,
        pytest.raises(reports.NotFoundError, match=r"'quiet-pc \(device dev-9\)'"),
    ):
        reports.machine_report(
            conn, load_catalog(), "quiet-pc", first, last, stale_after=STALE_AFTER
        )
    approve_device(engine, "dev-9")
    with engine.connect() as conn:
        report = reports.machine_report(
            conn, load_catalog(), "quiet-pc", first, last, stale_after=STALE_AFTER
        )
        with pytest.raises(reports.NotFoundError):
            reports.machine_report(
                conn, load_catalog(), "nobody", first, last, stale_after=STALE_AFTER
            )
    assert report["transactions"] == 0 and report["enrolledDevices"][0]["deviceId"] == "dev-9"
    assert report["topProcesses"] == [] and report["apps"] == []


@pytest.mark.parametrize(
    ("filters", "index"),
    [
        ({"app_id": "app-3"}, "ix_network_event_app_time"),
        ({"device_ids": ["dev-3", "dev-4"]}, "ix_network_event_device_time"),
    ],
)
def test_the_process_queries_read_an_index_range(
    engine: Engine, filters: dict[str, object], index: str
) -> None:
    """On a store of 20,000 events (50 devices, 40 apps, 30 days; statistics gathered), the plan
    reads the (app_id, time) or (device_id, time) index, not the whole table nor all of a week."""
    now = dt.datetime.now(dt.UTC)
    for d in range(50):
        events = [
            EventRecord(
                now - dt.timedelta(hours=(i * 7 + d) % 720), "h", "u", "", f"d{i % 40}.example",
                "", 443, 1, 1, "allowed", "", f"app-{i % 40}", "intercept", process_name=f"p{i % 9}",
            )
            for i in range(400)
        ]  # fmt: skip
        store_batch(engine, device_id=f"dev-{d}", batch_id="b", events=events)
    query = top_processes_query(start=now - dt.timedelta(days=7), end=now, **filters)  # type: ignore[arg-type]
    compiled = query.compile(dialect=engine.dialect, compile_kwargs={"render_postcompile": True})
    with engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        if engine.dialect.name == "sqlite":
            params: object = tuple(compiled.params[k] for k in compiled.positiontup or ())
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", params)  # type: ignore[arg-type]
        else:
            rows = conn.exec_driver_sql(f"EXPLAIN {compiled}", compiled.params)
        plan = "\n".join(" ".join(map(str, row)) for row in rows)
    assert index in plan, plan
