"""Device risk looks at the period a report shows against the device's baseline before it, not
only at the last day. On both back ends."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine

from enforcer.catalog import Catalog
from enforcer.discovery import reports
from enforcer.discovery.aggregate import Aggregator
from enforcer.discovery.attribute import Attributor
from enforcer.discovery.records import Record
from enforcer.store.rollups import merge_rollup

STALE = dt.timedelta(minutes=10)


def _traffic(engine: Engine, catalog: Catalog, days_ago: float, hosts: list[str]) -> None:
    t = (dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago)).timestamp()
    aggregator = Aggregator(Attributor(catalog))
    aggregator.add_all(
        Record(time=t, host=h, src_ip="10.0.0.9", user="erin", device="pc-09") for h in hosts
    )
    merge_rollup(engine, aggregator.rollup())


def _risk(engine: Engine, catalog: Catalog, days: int) -> tuple[str, list[str]]:
    first, last = reports.day_range(days)
    with engine.connect() as conn:
        [row] = reports.machines_report(conn, catalog, first, last, stale_after=STALE)
        machine = reports.machine_report(conn, catalog, "pc-09", first, last, stale_after=STALE)
    assert machine["riskLevel"] == row["riskLevel"]
    return row["riskLevel"], machine["riskReasons"]


def test_risky_apps_earlier_in_the_period_make_the_device_high_risk(
    engine: Engine, catalog: Catalog
) -> None:
    _traffic(engine, catalog, 20, ["boxy.example"])  # its baseline: a safe app
    _traffic(engine, catalog, 3, ["sharefast.example", "megashare.example"])
    _traffic(engine, catalog, 0, ["boxy.example"])  # today: nothing unusual
    level, reasons = _risk(engine, catalog, 7)
    assert level == "high", "the old code looked at today only and said low"
    assert "new risky apps megashare" in reasons[0] and "sharefast" in reasons[0]
    assert _risk(engine, catalog, 1)[0] == "low", "today alone holds nothing unusual"


def test_an_app_used_in_the_baseline_is_not_new_in_the_period(
    engine: Engine, catalog: Catalog
) -> None:
    _traffic(engine, catalog, 20, ["sharefast.example", "megashare.example"])
    _traffic(engine, catalog, 3, ["sharefast.example", "megashare.example"])
    assert _risk(engine, catalog, 7)[0] == "low"
