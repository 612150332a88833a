"""The per-user upload-spike alert policy (``per: user``) from uploaded logs, on both back ends:
the roll-up keeps each user's daily upload per app (`Rollup.user_apps`, the table
``discovery_user_app_daily``), and an upload's users are compared with their 30 days before,
named as the reports name them, within the policy's scope; a snapshot's deletion and
`enforcer discovery refold` carry the table along."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from enforcer.catalog import Catalog
from enforcer.discovery.aggregate import Aggregator
from enforcer.discovery.attribute import Attributor
from enforcer.discovery.identity import UserNames
from enforcer.discovery.ingest import ingest_files
from enforcer.discovery.records import Record
from enforcer.policy.schema import AlertPolicy
from enforcer.store.alerts import list_alerts
from enforcer.store.devices import enroll_device
from enforcer.store.named_reports import delete_report
from enforcer.store.refold import refold_users
from enforcer.store.rollups import merge_rollup
from enforcer.store.tables.discovery import ENTITY, USER_APP
from enforcer.store.trust import record_enrolment_trust

MB = 1_000_000
MAP = "time=ts,host=host,device=machine,user=user,bytes_up=up,action=action"
SPIKE = AlertPolicy(name="user spike", when="upload_spike", per="user", factor=10, min_upload=MB)


@pytest.fixture
def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _upload(
    engine: Engine,
    catalog: Catalog,
    path: Path,
    rows: list[tuple[dt.datetime, str, str, str, int]],
    policies: list[AlertPolicy],
) -> int:
    lines = ["ts,host,machine,user,up,action"]
    lines += [f"{t.timestamp():.0f},{h},{m},{u},{up},allowed" for t, h, m, u, up in rows]
    path.write_text("\n".join(lines) + "\n")
    stats = ingest_files(
        engine, catalog, [path], "csv", mapping=MAP, report_name=path.stem, policies=policies
    )
    return stats.alerts


def _history(
    engine: Engine, catalog: Catalog, tmp_path: Path, now: dt.datetime, who: list[tuple[str, str]]
) -> None:
    """30 days of 1 MB a day to boxy for each (machine, user), uploaded without policies."""
    rows = [
        (now - dt.timedelta(days=d), "boxy.example", machine, user, MB)
        for d in range(1, 31)
        for machine, user in who
    ]
    assert _upload(engine, catalog, tmp_path / "history.csv", rows, []) == 0


def _alerts(engine: Engine) -> list[dict[str, object]]:
    with engine.connect() as conn:
        return list(list_alerts(conn))


def test_each_user_far_above_their_median_raises_one_alert_and_below_the_factor_none(
    engine: Engine, catalog: Catalog, tmp_path: Path, now: dt.datetime
) -> None:
    _history(engine, catalog, tmp_path, now, [("pc-01", "alice"), ("pc-02", "bob")])
    today = [
        # alice: 12 MB + 8 MB under two forms of her name, on two machines (pc-03 last).
        (now - dt.timedelta(minutes=5), "boxy.example", "pc-01", "CONTOSO\\alice", 12 * MB),
        (now, "boxycdn.example", "pc-03", "alice@contoso.com", 8 * MB),
        (now, "boxy.example", "pc-02", "bob", 9 * MB),  # 9 x his median: below the factor
        (now, "boxy.example", "pc-04", "carol", 20 * MB),  # no history: a median of 0
        (now, "boxy.example", "pc-04", "", 50 * MB),  # no user: not a user's spike
    ]
    opened = _upload(engine, catalog, tmp_path / "today.csv", today, [SPIKE])
    alerts = _alerts(engine)
    assert opened == len(alerts) == 2
    found = {(a["policy"], a["machine"], a["user"], a["app_id"], a["hits"]) for a in alerts}
    assert found == {
        ("user spike", "pc-03", "alice", "boxy", 1),  # 20 MB against a median of 1 MB
        ("user spike", "pc-04", "carol", "boxy", 1),
    }
    alice = next(a for a in alerts if a["user"] == "alice")
    assert "user alice uploaded 20,000,000 bytes to boxy" in str(alice["details"])
    assert alice["report"] == "today"

    # The same day again from another file: still one open alert per (policy, machine, user,
    # app), counted again.
    more = [(now, "boxy.example", "pc-03", "alice", 5 * MB)]
    _upload(engine, catalog, tmp_path / "later.csv", more, [SPIKE])
    assert sorted((a["user"], a["hits"]) for a in _alerts(engine)) == [
        ("alice", 2),
        ("carol", 1),
    ]


def test_the_policy_factor_and_floor_are_respected(
    engine: Engine, catalog: Catalog, tmp_path: Path, now: dt.datetime
) -> None:
    _history(engine, catalog, tmp_path, now, [("pc-01", "alice")])
    calm = AlertPolicy(name="calm", when="upload_spike", per="user", factor=30, min_upload=MB)
    floor = AlertPolicy(
        name="floor", when="upload_spike", per="user", factor=2, min_upload=100 * MB
    )
    today = [(now, "boxy.example", "pc-01", "alice", 20 * MB)]
    assert _upload(engine, catalog, tmp_path / "today.csv", today, [calm, floor]) == 0
    assert _alerts(engine) == []


def test_a_scoped_policy_watches_the_users_machine_through_its_trusted_device(
    engine: Engine, catalog: Catalog, tmp_path: Path, now: dt.datetime
) -> None:
    for device_id, hostname, trusted in (("d1", "pc-fin", True), ("d2", "pc-other", False)):
        enroll_device(
            engine, device_id=device_id, hostname=hostname, os="Linux", user="x",
            local_ips=("10.0.0.7",), groups=("finance",),
        )  # fmt: skip
        record_enrolment_trust(engine, device_id, group_secret=trusted)
    _history(engine, catalog, tmp_path, now, [("pc-fin", "alice"), ("pc-other", "bob")])
    scoped = AlertPolicy(
        name="finance users", when="upload_spike", per="user", factor=10, min_upload=MB,
        scope=["finance"],
    )  # fmt: skip
    today = [
        (now, "boxy.example", "pc-fin", "alice", 20 * MB),
        (now, "boxy.example", "pc-other", "bob", 20 * MB),  # its device is not trusted
        (now, "boxy.example", "pc-logs-only", "carol", 20 * MB),
    ]
    assert _upload(engine, catalog, tmp_path / "today.csv", today, [scoped]) == 1
    assert [(a["machine"], a["user"]) for a in _alerts(engine)] == [("pc-fin", "alice")]


def test_deleting_a_snapshot_removes_its_user_uploads(
    engine: Engine, catalog: Catalog, tmp_path: Path, now: dt.datetime
) -> None:
    _history(engine, catalog, tmp_path, now, [("pc-01", "alice")])
    with engine.connect() as conn:
        assert conn.scalar(select(func.sum(USER_APP.c.bytes_up))) == 30 * MB
    delete_report(engine, "history")
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(USER_APP)) == 0
    # Without the history the median is 0: a 20 MB day is a spike.
    today = [(now, "boxy.example", "pc-01", "alice", 20 * MB)]
    assert _upload(engine, catalog, tmp_path / "today.csv", today, [SPIKE]) == 1


def test_refold_moves_the_user_uploads_onto_the_folded_user(
    engine: Engine, catalog: Catalog, now: dt.datetime
) -> None:
    forms = ("alice@contoso.com", "CONTOSO\\alice", "alice")
    aggregator = Aggregator(Attributor(catalog), users=UserNames(keep_domains=True))
    t = now.timestamp() - 60
    aggregator.add_all(
        Record(t + i, "boxy.example", "10.0.0.7", user, "pc-01", "", 0, 100 * (i + 1), 0, "")
        for i, user in enumerate(forms)
    )
    merge_rollup(engine, aggregator.rollup())

    def uploads() -> list[tuple[str, int]]:
        query = (
            select(ENTITY.c.name, USER_APP.c.bytes_up)
            .join(ENTITY, (ENTITY.c.kind == "user") & (ENTITY.c.ordinal == USER_APP.c.user))
            .order_by(ENTITY.c.name)
        )
        with engine.connect() as conn:
            return [(name, up) for name, up in conn.execute(query)]

    assert uploads() == [("alice", 300), ("alice@contoso", 200), ("alice@contoso.com", 100)]
    stats = refold_users(engine, UserNames())
    assert stats.rows["discovery_user_app_daily"] == 2
    assert uploads() == [("alice", 600)]
    assert refold_users(engine, UserNames()).rows.get("discovery_user_app_daily", 0) == 0
