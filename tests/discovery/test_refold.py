"""Refolding users (`enforcer discovery refold`) on both back ends: data rolled up while domains were kept apart
(``alice@contoso.com``, ``CONTOSO\\alice`` and ``alice`` as three users) is re-keyed by today's
rules into one user, in every report and alert; run again, it changes nothing."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine

from enforcer.catalog import Catalog
from enforcer.discovery import reports
from enforcer.discovery.aggregate import Aggregator
from enforcer.discovery.attribute import Attributor
from enforcer.discovery.identity import UserNames
from enforcer.discovery.records import Record
from enforcer.store.alerts import list_alerts, raise_policy_alerts
from enforcer.store.refold import refold_users
from enforcer.store.rollups import merge_rollup

FORMS = ("alice@contoso.com", "CONTOSO\\alice", "alice")


def _roll_up_with_domains_kept(engine: Engine, catalog: Catalog, now: float) -> None:
    aggregator = Aggregator(Attributor(catalog), users=UserNames(keep_domains=True))
    aggregator.add_all(
        Record(now + i, "boxy.example", "10.0.0.7", user, "pc-01", "", 0, 100, 1000, "")
        for i, user in enumerate(FORMS)
    )
    merge_rollup(engine, aggregator.rollup())
    with engine.begin() as conn:
        raise_policy_alerts(
            conn,
            [{"policy": "blocked", "when": "blocked_app", "severity": "low", "machine": "pc-01",
              "user": "alice@contoso", "app_id": "boxy", "domain": "", "count": 1,
              "time": dt.datetime.fromtimestamp(now, dt.UTC), "details": "1 hit(s)"}],
        )  # fmt: skip


def _views(engine: Engine, catalog: Catalog) -> tuple[object, ...]:
    first, last = reports.day_range(1)
    with engine.connect() as conn:
        users = [(u["user"], u["transactions"]) for u in reports.users_report(conn, first, last)]
        (app,) = reports.apps_report(conn, catalog, first, last)
        (machine,) = reports.machines_report(
            conn, catalog, first, last, stale_after=dt.timedelta(days=1)
        )
        alerts = [(a["user"], a["details"]) for a in list_alerts(conn)]
    return users, app["users"], machine["lastUser"], alerts


def test_refold_rekeys_rolled_up_users_and_alerts_once(engine: Engine, catalog: Catalog) -> None:
    now = dt.datetime.now(dt.UTC).timestamp() - 60
    _roll_up_with_domains_kept(engine, catalog, now)
    users, distinct, last_user, _ = _views(engine, catalog)
    assert sorted(users) == [("alice", 1), ("alice@contoso", 1), ("alice@contoso.com", 1)]
    assert (distinct, last_user) == (3, "alice")

    stats = refold_users(engine, UserNames())
    assert stats.folded == {"alice@contoso": "alice", "alice@contoso.com": "alice"}
    after = _views(engine, catalog)
    assert after == (
        [("alice", 3)],
        1,
        "alice",
        [("alice", "1 hit(s); user seen as alice@contoso")],
    )
    first, last = reports.day_range(1)
    with engine.connect() as conn:
        page = reports.user_report(conn, "CONTOSO\\alice", first, last)
    assert page["transactions"] == 3
    assert {f["form"] for f in page["forms"]} >= {"alice@contoso", "alice@contoso.com"}

    again = refold_users(engine, UserNames())
    assert (again.folded, any(again.rows.values())) == ({}, False)
    assert _views(engine, catalog) == after
