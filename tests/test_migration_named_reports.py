"""Migration 0014 keeps what was rolled up before reports had names: it becomes the snapshot
report 'earlier data' (readable alone, in 'all', and deletable); a store without discovery data
gets no such report. Both back ends; down and up again."""

from __future__ import annotations

from alembic import command
from sqlalchemy import Engine, text

from enforcer.catalog import load_catalog
from enforcer.discovery.reports import apps_report
from enforcer.store.encoding import to_bytes
from enforcer.store.migrate import _config
from enforcer.store.named_reports import delete_report, find_report, list_reports, scoped

DAY = 20_412


def _old_row(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO discovery_app_daily (day, app_id, domain, transactions, bytes_up,"
                " bytes_down, blocked, first_seen, last_seen, devices, users, ips) VALUES"
                " (:day, 'dropbox', '', 7, 70, 700, 0, :t, :t, :bits, :bits, :bits)"
            ),
            {"day": DAY, "t": DAY * 86_400.0, "bits": to_bytes(1)},
        )


def _dropbox(engine: Engine, selector: str) -> int:
    with engine.connect() as conn:
        scoped(conn, find_report(conn, selector))
        rows = apps_report(conn, load_catalog(), DAY, DAY)
    return sum(r["transactions"] for r in rows if r["app"] == "dropbox")


def test_rollups_from_before_named_reports_become_the_report_earlier_data(engine: Engine) -> None:
    command.downgrade(_config(engine), "0013")
    _old_row(engine)
    command.upgrade(_config(engine), "head")
    with engine.connect() as conn:
        (earlier,) = list_reports(conn)
    assert (earlier.name, earlier.kind) == ("earlier data", "snapshot")
    assert _dropbox(engine, "earlier data") == _dropbox(engine, "all") == 7
    delete_report(engine, "earlier data")
    assert _dropbox(engine, "all") == 0


def test_a_store_without_discovery_data_gets_no_report(engine: Engine) -> None:
    command.downgrade(_config(engine), "0013")
    command.upgrade(_config(engine), "head")
    with engine.connect() as conn:
        assert list_reports(conn) == []
