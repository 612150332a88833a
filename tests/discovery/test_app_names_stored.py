"""Firewall lines that carry an application name and no host name (PAN-OS App-ID) are reported
under their catalog app once uploaded, on both back ends."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from enforcer.catalog import Catalog, load_catalog
from enforcer.discovery import reports
from enforcer.discovery.formats import FORMATS
from enforcer.discovery.ingest import ingest_files
from enforcer.discovery.records import Record

LOG = Path(__file__).resolve().parents[2] / "examples" / "logs" / "panos-traffic.csv"


def test_app_id_names_are_uploaded_as_their_catalog_apps(engine: Engine) -> None:
    catalog: Catalog = load_catalog()
    records = [r for r in FORMATS["panos"](LOG.read_text().splitlines()) if type(r) is Record]
    by_name = [r for r in records if r.host == "app:slack"]
    assert by_name and not [r for r in records if "slack" in r.host and r not in by_name]
    ingest_files(engine, catalog, [LOG], "panos")
    days = reports.day_range(3650)
    with engine.connect() as conn:
        apps = {a["app"]: a for a in reports.apps_report(conn, catalog, *days)}
        domains = {d["domain"] for d in reports.domains_report(conn, *days)}
    assert apps["slack"]["transactions"] == len(by_name)  # only App-ID lines name Slack
    assert not {d for d in domains if "app" in d or "slack" in d}
