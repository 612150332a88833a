"""Alert and event floods from one device (issue 13.9): events dated outside the server's
window are refused one by one, a device's uploads are rate-limited, a flood of hits is one
open alert with a count, and alerts are pruned after their retention."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import Engine

from enforcer.api import ApiLimits, create_app
from enforcer.catalog import load_catalog
from enforcer.config import Settings
from enforcer.discovery.continuous import process_events
from enforcer.models import Action, Indicator, Severity
from enforcer.store.alerts import acknowledge_alert, list_alerts, prune_alerts
from enforcer.store.events import EventRecord, count_events, store_batch
from enforcer.store.manual import add_manual
from tests.api.conftest import ADMIN, SECRET, Api, bearer, running


@pytest.fixture
def strict(engine: Engine) -> Iterator[Api]:
    """A server with the default time window and a small per-device event budget."""
    settings = Settings(
        admin_token=SecretStr(ADMIN), enroll_secret=SecretStr(SECRET), events_per_minute=30
    )
    with (
        running(create_app(settings, engine, ApiLimits(poll_interval=0.1))) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        yield Api(url, engine, client)


def _event(when: dt.datetime, domain: str = "site.example") -> dict[str, Any]:
    return {
        "time": when.isoformat(), "hostname": "pc-1", "user": "alice", "localIp": "10.0.0.5",
        "domain": domain, "destIp": "203.0.113.7", "destPort": 443, "bytesUp": 1,
        "bytesDown": 2, "action": "allowed", "source": "dns",
    }  # fmt: skip


def test_events_outside_the_window_are_refused_with_a_reason(strict: Api) -> None:
    token = strict.enroll("pc-1")
    now = dt.datetime.now(dt.UTC)
    batch = {
        "batchId": "b-1",
        "events": [
            _event(now),
            _event(dt.datetime(9999, 12, 31, tzinfo=dt.UTC)),
            _event(now - dt.timedelta(days=3)),
            _event(now + dt.timedelta(hours=2)),
        ],
    }
    answer = strict.client.post("/api/v1/events", json=batch, headers=bearer(token))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["accepted"] == ["b-1"] and body["count"] == 2
    assert [r["index"] for r in body["refused"]] == [1, 2]
    assert "ahead of" in body["refused"][0]["reason"]
    assert "behind" in body["refused"][1]["reason"]
    with strict.engine.connect() as conn:
        assert count_events(conn) == 2


def test_a_device_over_its_event_budget_gets_429(strict: Api) -> None:
    token = strict.enroll("pc-1")
    now = dt.datetime.now(dt.UTC)

    def post(batch_id: str, n: int) -> httpx.Response:
        events = [_event(now, f"s{i}.example") for i in range(n)]
        return strict.client.post(
            "/api/v1/events", json={"batchId": batch_id, "events": events}, headers=bearer(token)
        )

    assert post("b-1", 20).status_code == 200
    flooded = post("b-2", 20)
    assert flooded.status_code == 429 and int(flooded.headers["Retry-After"]) >= 1
    other = strict.enroll("pc-2")
    assert (
        strict.client.post(
            "/api/v1/events", json={"batchId": "x", "events": [_event(now)]}, headers=bearer(other)
        ).status_code
        == 200
    ), "the budget is per device"


def test_a_flood_of_hits_is_one_open_alert_with_a_count(engine: Engine) -> None:
    add_manual(
        engine, Indicator("mega.nz", Action.BLOCK, Severity.HIGH, generate_alert=True), actor="t"
    )
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)

    def hits(batch: str, n: int, offset: int, user: str = "alice") -> None:
        events = [
            EventRecord(start + dt.timedelta(seconds=offset + i), "pc-1", user, "10.0.0.5",
                        "mega.nz", "1.2.3.4", 443, 0, 0, "blocked", "mega.nz", "mega", "proxy")
            for i in range(n)
        ]  # fmt: skip
        store_batch(engine, device_id="dev-1", batch_id=batch, events=events)
        process_events(engine, load_catalog())

    hits("b1", 500, 0)
    hits("b2", 300, 500)
    hits("b3", 2, 0, user="bob")
    with engine.connect() as conn:
        alerts = {a["user"]: a for a in list_alerts(conn)}
    assert set(alerts) == {"alice", "bob"}
    alice = alerts["alice"]
    assert alice["hits"] == 800 and alice["time"].replace(tzinfo=dt.UTC) == start
    assert alice["last_seen"].replace(tzinfo=dt.UTC) == start + dt.timedelta(seconds=799)
    # Acknowledged, then hit again: a new alert opens (the old one keeps its count).
    assert acknowledge_alert(engine, alice["id"], actor="admin")
    hits("b4", 1, 900)
    with engine.connect() as conn:
        again = [a for a in list_alerts(conn) if a["user"] == "alice"]
    assert sorted(a["hits"] for a in again) == [1, 800]
    # Retention: alerts last seen before the cutoff go.
    assert prune_alerts(engine, start + dt.timedelta(seconds=850)) == 2
    with engine.connect() as conn:
        assert [a["hits"] for a in list_alerts(conn)] == [1]


def test_a_group_scoped_alerting_indicator_alerts_only_for_its_group(engine: Engine) -> None:
    from enforcer.store.devices import enroll_device

    add_manual(
        engine,
        Indicator("paste.example", Action.BLOCK, Severity.HIGH, generate_alert=True, scope="eng"),
        actor="t",
    )
    for device_id, groups in (("in-eng", ("eng",)), ("outside", ())):
        enroll_device(
            engine, device_id=device_id, hostname=device_id, os="Linux", user="u",
            local_ips=(), groups=groups,
        )  # fmt: skip
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    for device_id in ("in-eng", "outside"):
        event = EventRecord(now, device_id, "alice", "10.0.0.5", "paste.example", "1.2.3.4", 443,
                            0, 0, "blocked", "paste.example", "", "proxy")  # fmt: skip
        store_batch(engine, device_id=device_id, batch_id=f"b-{device_id}", events=[event])
    process_events(engine, load_catalog())
    with engine.connect() as conn:
        alerts = list_alerts(conn)
    assert [(a["device_id"], a["severity"]) for a in alerts] == [("in-eng", "High")]
