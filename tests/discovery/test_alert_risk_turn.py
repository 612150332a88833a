"""The device_high_risk alert policy alerts when a device *turns* high risk (issue 15), not on
every day it stays high: a device that was high yesterday and is high again today raises no new
alert after its first one was closed. On both back ends."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine

from enforcer.catalog import Catalog
from enforcer.discovery import reports
from enforcer.policy.schema import AlertPolicy
from enforcer.store.alerts import close_alert
from tests.discovery.test_alert_policies import _alerts, _device, _roll, event


def test_a_device_that_stays_high_risk_raises_no_new_alert(
    engine: Engine, catalog: Catalog
) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    _device(engine, "d1", "pc-01", ())
    policy = AlertPolicy(name="high", when="device_high_risk", severity="high")
    # Yesterday: two risky apps never used before turn the device high.
    yesterday = now - dt.timedelta(days=1)
    _roll(engine, catalog, [policy], "d1",
          [event(yesterday, "pastey.example"), event(yesterday, "tunnelr.example")])  # fmt: skip
    (turned,) = _alerts(engine, "high")
    assert close_alert(engine, int(str(turned["id"])), actor="admin")
    # Today: two other new risky apps, so the device is high today too, as it was yesterday.
    _roll(engine, catalog, [policy], "d1",
          [event(now, "sharefast.example"), event(now, "megashare.example")])  # fmt: skip
    with engine.connect() as conn:
        [row] = reports.machines_report(
            conn, catalog, *reports.day_range(1), stale_after=dt.timedelta(minutes=10)
        )
    assert row["riskLevel"] == "high", "today alone is high risk"
    statuses = [(a["status"], a["hits"]) for a in _alerts(engine, "high")]
    assert statuses == [("closed", 1)], "still high is not a turn to high: no new alert"
