"""Named reports, on both back ends: each upload is a snapshot report with its files, period,
lines and bad lines; the devices' events are the continuous report ``endpoint events``; every
report reads one report or all; deleting a snapshot removes its data."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine

from enforcer.catalog import load_catalog
from enforcer.discovery import reports
from enforcer.discovery.continuous import process_events
from enforcer.discovery.ingest import ingest_files
from enforcer.discovery.records import FormatError
from enforcer.store.events import EventRecord, store_batch
from enforcer.store.named_reports import (
    ReportError,
    delete_report,
    find_report,
    list_reports,
    scoped,
)

REPO = Path(__file__).resolve().parents[2]
LOGS = REPO / "examples" / "logs"
EVER = reports.day_range(3650)


def _apps(engine: Engine, selector: str) -> dict[str, int]:
    """Transactions per app in one report (or all)."""
    with engine.connect() as conn:
        scoped(conn, find_report(conn, selector))
        return {
            r["app"]: r["transactions"] for r in reports.apps_report(conn, load_catalog(), *EVER)
        }


def _machines(engine: Engine, selector: str) -> set[str]:
    with engine.connect() as conn:
        scoped(conn, find_report(conn, selector))
        rows = reports.machines_report(
            conn, load_catalog(), *EVER, stale_after=dt.timedelta(minutes=10)
        )
    return {r["device"] for r in rows}


def test_each_upload_is_a_snapshot_report_and_all_is_their_sum(engine: Engine) -> None:
    catalog = load_catalog()
    squid = ingest_files(engine, catalog, [LOGS / "squid-access.log"], "squid")
    zeek = ingest_files(
        engine, catalog, [LOGS / "zeek-http.log", LOGS / "zeek-ssl.json"], "zeek",
        report_name="zeek week 47",
    )  # fmt: skip
    assert (squid.report, zeek.report) == ("squid-access.log", "zeek week 47")
    with engine.connect() as conn:
        listed = {r.name: r for r in list_reports(conn)}
    snapshot = listed["zeek week 47"]
    assert snapshot.kind == "snapshot" and snapshot.format == "zeek"
    assert snapshot.files == (str(LOGS / "zeek-http.log"), str(LOGS / "zeek-ssl.json"))
    assert snapshot.records == zeek.records and snapshot.bad_lines == zeek.bad_lines
    period = snapshot.as_json()
    assert period["periodStart"].startswith("2025-11-20") and period["lines"] > 0

    by_squid, by_zeek, total = (
        _apps(engine, s) for s in ("squid-access.log", "zeek week 47", "all")
    )
    assert by_squid and by_zeek
    for app in set(by_squid) | set(by_zeek):
        assert total[app] == by_squid.get(app, 0) + by_zeek.get(app, 0)
    assert _machines(engine, "all") == _machines(engine, "squid-access.log") | _machines(
        engine, "zeek week 47"
    )

    # A name the user chose is not taken twice; a default name is made unique.
    with pytest.raises(ReportError, match="exists already"):
        ingest_files(engine, catalog, [LOGS / "iis-w3c.log"], "w3c", report_name="zeek week 47")
    again = ingest_files(engine, catalog, [LOGS / "squid-access.log.gz"], "squid")
    assert again.report == "squid-access.log.gz"


def test_deleting_a_snapshot_removes_its_data_and_its_files_can_come_again(
    engine: Engine,
) -> None:
    catalog = load_catalog()
    ingest_files(engine, catalog, [LOGS / "zeek-http.log"], "zeek", report_name="zeek")
    only_zeek = _apps(engine, "all")
    ingest_files(engine, catalog, [LOGS / "squid-access.log"], "squid", report_name="squid")
    assert _apps(engine, "all") != only_zeek
    deleted = delete_report(engine, "squid")
    assert deleted.name == "squid"
    assert _apps(engine, "all") == only_zeek
    with engine.connect() as conn:
        assert [r.name for r in list_reports(conn)] == ["zeek"]
        with pytest.raises(ReportError, match=r"no report named 'squid' \(reports: 'zeek'"):
            find_report(conn, "squid")
    # Its files are forgotten with it: uploading them again counts them again (not skipped).
    again = ingest_files(engine, catalog, [LOGS / "squid-access.log"], "squid")
    assert again.skipped == [] and again.records > 0


def test_device_events_are_the_endpoint_report_which_cannot_be_deleted(engine: Engine) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    event = EventRecord(
        now, "pc", "alice", "10.0.0.7", "www.dropbox.com", "192.0.2.9", 443, 10, 10, "allowed",
        "", "", "proxy",
    )  # fmt: skip
    store_batch(engine, device_id="d1", batch_id="b1", events=[event, event, event])
    process_events(engine, load_catalog())
    ingest_files(engine, load_catalog(), [LOGS / "squid-access.log"], "squid")
    with engine.connect() as conn:
        endpoint = find_report(conn, "endpoint events")
    assert endpoint is not None and endpoint.kind == "continuous" and endpoint.records == 3
    assert endpoint.first_seen == endpoint.last_seen == now.timestamp()
    assert _apps(engine, "endpoint events") == {"dropbox": 3}
    assert _apps(engine, "all")["dropbox"] == 3 + _apps(engine, "squid-access.log")["dropbox"]
    with pytest.raises(ReportError, match="only snapshots are deleted"):
        delete_report(engine, "endpoint events")


def run(args: list[str], db_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ENFORCER_DATABASE_URL": db_url}
    return subprocess.run([sys.executable, "-m", "enforcer", "discovery", *args], env=env,
                          capture_output=True, text=True, timeout=120, cwd=REPO)  # fmt: skip


def run_json(args: list[str], db_url: str) -> list[dict[str, object]]:
    done = run([*args, "--json"], db_url)
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, object]] = json.loads(done.stdout)
    return rows


def test_the_cli_lists_selects_and_deletes_reports(db_url: str) -> None:
    done = run(
        ["upload", "--format", "squid", "--report", "proxy nov", str(LOGS / "squid-access.log")],
        db_url,
    )
    assert done.returncode == 0, done.stderr
    assert "Snapshot report: proxy nov (--report 'proxy nov')" in done.stdout
    assert run(["upload", "--format", "zeek", str(LOGS / "zeek-http.log")], db_url).returncode == 0
    listed = run(["reports"], db_url).stdout
    assert "proxy nov" in listed and "zeek-http.log" in listed and "snapshot" in listed
    one = run_json(["apps", "--since", "3650d", "--report", "proxy nov"], db_url)
    every = run_json(["apps", "--since", "3650d"], db_url)
    assert sum(int(a["transactions"]) for a in one) < sum(int(a["transactions"]) for a in every)
    unknown = run(["machines", "--report", "nope"], db_url)
    assert unknown.returncode == 1 and "no report named 'nope'" in unknown.stderr
    assert run(["delete", "proxy nov", "--yes"], db_url).returncode == 0
    after = run_json(["apps", "--since", "3650d"], db_url)
    assert after == run_json(["apps", "--since", "3650d", "--report", "zeek-http.log"], db_url)


def test_an_upload_that_reads_nothing_or_is_refused_leaves_no_report(
    engine: Engine, tmp_path: Path
) -> None:
    catalog = load_catalog()
    wrong = ingest_files(engine, catalog, [LOGS / "zeek-http.log"], "squid")  # every line bad
    assert wrong.records == 0 and wrong.bad_lines > 0 and wrong.report == ""
    damaged = tmp_path / "cut.log.gz"
    damaged.write_bytes((LOGS / "squid-access.log.gz").read_bytes()[:300])
    with pytest.raises(FormatError):
        ingest_files(
            engine, catalog, [LOGS / "squid-access.log", damaged], "squid", report_name="x"
        )
    with engine.connect() as conn:
        assert list_reports(conn) == []
    assert _apps(engine, "all") == {}  # the first file's records went with the report
    kept = ingest_files(engine, catalog, [LOGS / "squid-access.log"], "squid", report_name="x")
    assert kept.skipped == [] and kept.report == "x"
