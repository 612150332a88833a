"""Alert policies of the policy repo, checked by the continuous roll-up, on both back ends.

Each kind is driven with real device events through `process_events`; one open alert per
(policy, machine, user, app) counts its hits; scope limits a policy to its groups' machines;
closing an alert makes the next hit open a new one.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import Engine

from enforcer.catalog import Catalog
from enforcer.discovery.alert_policies import DailyUpload, Facts, evaluate
from enforcer.discovery.continuous import process_events
from enforcer.errors import PolicySetError
from enforcer.pipeline.load import load_state
from enforcer.policy.schema import AlertPolicy
from enforcer.store.alerts import close_alert, list_alerts
from enforcer.store.devices import enroll_device
from enforcer.store.events import EventRecord, store_batch
from enforcer.store.trust import record_enrolment_trust
from tests.conftest import write_policy

MB = 1_000_000


def event(
    when: dt.datetime,
    domain: str,
    *,
    up: int = 100,
    user: str = "alice",
    action: str = "allowed",
    app: str = "",
) -> EventRecord:
    return EventRecord(
        when, "pc", user, "10.0.0.7", domain, "192.0.2.9", 443, up, 1000, action,
        domain if action == "blocked" else "", app, "proxy",
    )  # fmt: skip


@pytest.fixture
def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _device(engine: Engine, device_id: str, hostname: str, groups: tuple[str, ...]) -> None:
    enroll_device(
        engine, device_id=device_id, hostname=hostname, os="Linux", user="alice",
        local_ips=("10.0.0.7",), groups=groups,
    )  # fmt: skip
    record_enrolment_trust(engine, device_id, group_secret=True)  # its machine is its hostname


_batches = iter(range(1_000_000))


def _roll(
    engine: Engine,
    catalog: Catalog,
    policies: list[AlertPolicy],
    device: str,
    events: list[EventRecord],
) -> None:
    store_batch(engine, device_id=device, batch_id=f"b{next(_batches)}", events=events)
    while process_events(engine, catalog, policies=policies):
        pass


def _alerts(engine: Engine, policy: str) -> list[dict[str, object]]:
    """The policy's alerts, each machine by its hostname (a device the server does not trust
    is the machine 'HOST (device ID)' in the reports; these tests are about the alerts)."""
    with engine.connect() as conn:
        alerts = list_alerts(conn, policy=policy)
    for alert in alerts:
        alert["machine"] = str(alert["machine"]).split(" (device ")[0]
    return alerts


def test_a_new_risky_app_alerts_once_and_a_safe_one_not_at_all(
    engine: Engine, catalog: Catalog, now: dt.datetime
) -> None:
    _device(engine, "d1", "pc-01", ())
    policy = AlertPolicy(name="risky new app", when="new_app", min_risk=7, severity="high")
    _roll(engine, catalog, [policy], "d1", [event(now, "sharefast.example")])
    _roll(engine, catalog, [policy], "d1", [event(now, "boxy.example")])  # risk 0
    _roll(engine, catalog, [policy], "d1", [event(now, "dl.sharefast.example")])  # known now
    alerts = _alerts(engine, "risky new app")
    assert [(a["app_id"], a["severity"], a["hits"], a["status"]) for a in alerts] == [
        ("sharefast", "high", 1, "open")
    ]
    assert "pc-01" in str(alerts[0]["details"])


def test_blocked_hits_count_on_one_open_alert_until_it_is_closed(
    engine: Engine, catalog: Catalog, now: dt.datetime
) -> None:
    _device(engine, "d1", "pc-01", ())
    policy = AlertPolicy(name="blocked", when="blocked_app")
    hit = event(now, "megashare.example", action="blocked", app="megashare")
    _roll(engine, catalog, [policy], "d1", [hit, hit])
    _roll(engine, catalog, [policy], "d1", [hit])
    alerts = _alerts(engine, "blocked")
    assert [(a["machine"], a["user"], a["app_id"], a["hits"]) for a in alerts] == [
        ("pc-01", "alice", "megashare", 3)
    ]
    assert close_alert(engine, int(alerts[0]["id"]), actor="admin")  # type: ignore[call-overload]
    _roll(engine, catalog, [policy], "d1", [hit])
    statuses = sorted((a["status"], a["hits"]) for a in _alerts(engine, "blocked"))
    assert statuses == [("closed", 3), ("open", 1)]


def test_scope_limits_a_policy_to_its_groups_machines(
    engine: Engine, catalog: Catalog, now: dt.datetime
) -> None:
    _device(engine, "d1", "pc-eng", ("eng",))
    _device(engine, "d2", "pc-fin", ("finance",))
    policy = AlertPolicy(name="finance blocked", when="blocked_app", scope=["finance"])
    hit = event(now, "megashare.example", action="blocked", app="megashare")
    _roll(engine, catalog, [policy], "d1", [hit])
    _roll(engine, catalog, [policy], "d2", [hit])
    assert [a["machine"] for a in _alerts(engine, "finance blocked")] == ["pc-fin"]


def test_an_upload_over_x_times_the_30_day_median_alerts_per_device_and_per_user(
    engine: Engine, catalog: Catalog, now: dt.datetime
) -> None:
    _device(engine, "d1", "pc-01", ())
    by_device = AlertPolicy(name="spike", when="upload_spike", factor=10, min_upload=MB)
    by_user = AlertPolicy(name="user spike", when="upload_spike", factor=10, per="user")
    policies = [by_device, by_user]
    history = [event(now - dt.timedelta(days=d), "boxy.example", up=MB) for d in range(1, 31)]
    _roll(engine, catalog, [], "d1", history)  # before the policies existed
    _roll(engine, catalog, policies, "d1", [event(now, "boxy.example", up=5 * MB)])
    assert _alerts(engine, "spike") == []  # 5x the median of 1 MB: not over 10x
    _roll(engine, catalog, policies, "d1", [event(now, "boxy.example", up=20 * MB)])
    (alert,) = _alerts(engine, "spike")
    assert (alert["machine"], alert["app_id"]) == ("pc-01", "boxy")
    assert "25,000,000 bytes" in str(alert["details"])
    (user_alert,) = _alerts(engine, "user spike")  # 25 MB reaches its default 10 MB floor
    assert (user_alert["user"], user_alert["machine"]) == ("alice", "pc-01")


def test_a_device_turning_high_risk_alerts(
    engine: Engine, catalog: Catalog, now: dt.datetime
) -> None:
    _device(engine, "d1", "pc-01", ())
    policy = AlertPolicy(name="high", when="device_high_risk", severity="high")
    _roll(engine, catalog, [policy], "d1", [event(now, "boxy.example")])
    assert _alerts(engine, "high") == []
    # Two risky apps never used before: high risk today, and it was not yesterday.
    _roll(
        engine,
        catalog,
        [policy],
        "d1",
        [event(now, "pastey.example"), event(now, "tunnelr.example")],
    )
    (alert,) = _alerts(engine, "high")
    assert alert["machine"] == "pc-01" and "new risky apps" in str(alert["details"])


def test_alert_policies_are_read_from_the_policy_repo_with_their_errors(
    tmp_path: Path, catalog: Catalog
) -> None:
    write_policy(
        tmp_path,
        "alerts.yaml",
        """
        device_groups:
          - name: finance
        alert_policies:
          - name: risky new app
            when: new_app
            min_risk: 7
            severity: high
            scope: [finance]
        """,
    )
    state = load_state(tmp_path, catalog=catalog)
    (policy,) = (p.item for p in state.policy.alert_policies)
    assert (policy.when, policy.min_risk, policy.scope) == ("new_app", 7, ["finance"])
    write_policy(
        tmp_path,
        "more.yaml",
        """
        alert_policies:
          - name: risky new app
            when: new_app
          - name: spike
            when: upload_spike
            factor: 10
            apps: [boxi]
        """,
    )
    with pytest.raises(PolicySetError) as caught:
        load_state(tmp_path, catalog=catalog)
    text = "\n".join(str(e) for e in caught.value.errors)
    assert "more.yaml:2: alert_policies[0]" in text and "needs min_risk" in text
    assert "more.yaml:4: alert_policies.apps: unknown app 'boxi' (did you mean 'boxy'?)" in text


def test_the_upload_median_counts_days_without_use_as_zero() -> None:
    policy = AlertPolicy(name="s", when="upload_spike", factor=3, min_upload=0)
    sparse = (0,) * 20 + (100,) * 10  # median 0: any upload beyond the floor is a spike
    steady = (100,) * 30
    facts = Facts(
        device_uploads=[
            DailyUpload(who="a", app_id="x", day=1, bytes_up=301, baseline=steady, last_seen=0),
            DailyUpload(who="b", app_id="x", day=1, bytes_up=300, baseline=steady, last_seen=0),
            DailyUpload(who="c", app_id="x", day=1, bytes_up=1, baseline=sparse, last_seen=0),
        ]
    )
    assert [h.machine for h in evaluate([policy], facts)] == ["a", "c"]
