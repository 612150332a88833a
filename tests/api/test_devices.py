"""Device identity and standing: the facts a device reports (``PUT /api/v1/devices/self``), the
revision it holds (recorded from its sync requests), its time to enforce, and stale devices.

Run on both back ends (the `engine` fixture); revisions are made by the real pipeline and aged by
rewriting their creation time, so no test waits for a clock.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, update

from enforcer.store.devices import (
    enroll_device,
    list_devices,
    record_applied,
    update_facts,
)
from enforcer.store.tables.indicators import REV
from tests.api.conftest import Api, bearer
from tests.api.helpers import apply_indicators, block

TEN_MINUTES = dt.timedelta(minutes=10)
NOW = dt.datetime(2030, 6, 1, 12, 0, tzinfo=dt.UTC)


def _age_revision(engine: Engine, revision: int, created_at: dt.datetime) -> None:
    with engine.begin() as conn:
        conn.execute(update(REV).where(REV.c.id == revision).values(created_at=created_at))


def _enrol(engine: Engine, device_id: str, hostname: str) -> None:
    enroll_device(
        engine, device_id=device_id, hostname=hostname, os="Linux", user="u", local_ips=(),
        groups=(),
    )  # fmt: skip


def _status(engine: Engine, **filters: object) -> dict[str, object]:
    with engine.connect() as conn:
        found = list_devices(conn, stale_after=TEN_MINUTES, now=NOW, **filters)  # type: ignore[arg-type]
    return {s.device.device_id: s for s in found}


def test_a_device_behind_for_longer_than_stale_after_is_stale(engine: Engine) -> None:
    first = apply_indicators(engine, [block("a.example")])
    second = apply_indicators(engine, [block("a.example"), block("b.example")])
    _age_revision(engine, first, NOW - dt.timedelta(hours=2))
    _age_revision(engine, second, NOW - dt.timedelta(minutes=30))
    for device_id in ("current", "behind", "recent", "never"):
        _enrol(engine, device_id, f"{device_id}.corp")
    record_applied(engine, "current", second, now=NOW - dt.timedelta(minutes=29))
    record_applied(engine, "behind", first, now=NOW - dt.timedelta(hours=1))
    # A third revision made five minutes ago: "current" lacks it, but not for long yet.
    third = apply_indicators(engine, [block("c.example")])
    _age_revision(engine, third, NOW - dt.timedelta(minutes=5))
    record_applied(engine, "recent", third, now=NOW - dt.timedelta(minutes=4))

    found = _status(engine)
    current, behind, recent = found["current"], found["behind"], found["recent"]
    assert current.device.applied_revision == second
    assert current.time_to_enforce == dt.timedelta(minutes=1)
    assert current.behind_since == NOW - dt.timedelta(minutes=5) and not current.stale
    assert behind.behind_since == NOW - dt.timedelta(minutes=30) and behind.stale
    assert behind.time_to_enforce == dt.timedelta(hours=1)
    assert recent.behind_since is None and not recent.stale
    # Never synced (enrolled before NOW): behind since the first revision.
    never = found["never"]
    assert never.device.applied_revision is None and never.time_to_enforce is None
    assert never.behind_since == NOW - dt.timedelta(hours=2) and never.stale
    assert set(_status(engine, stale_only=True)) == {"behind", "never"}


def test_a_new_device_that_never_synced_is_stale_only_after_stale_after(engine: Engine) -> None:
    now = dt.datetime.now(dt.UTC)
    revision = apply_indicators(engine, [block("a.example")])
    _age_revision(engine, revision, now - dt.timedelta(days=2))
    _enrol(engine, "silent", "silent.corp")
    with engine.connect() as conn:
        at_once = list_devices(conn, stale_after=TEN_MINUTES, now=now)
        later = list_devices(conn, stale_after=TEN_MINUTES, now=now + 2 * TEN_MINUTES)
    assert at_once[0].behind_since == at_once[0].device.enrolled_at, "behind since enrolment"
    assert not at_once[0].stale and later[0].stale


def test_record_applied_writes_once_per_revision(engine: Engine) -> None:
    _enrol(engine, "d1", "d1.corp")
    assert record_applied(engine, "d1", 3, now=NOW)
    assert not record_applied(engine, "d1", 3, now=NOW + TEN_MINUTES), "already recorded"
    assert _status(engine)["d1"].device.applied_at == NOW  # type: ignore[attr-defined]
    assert record_applied(engine, "d1", 4, now=NOW + TEN_MINUTES)


def test_search_by_hostname_or_id_and_by_machine_name(engine: Engine) -> None:
    _enrol(engine, "id-1", "Alice-Laptop")
    _enrol(engine, "id-2", "bob-desktop")
    assert set(_status(engine, search="laptop")) == {"id-1"}
    assert set(_status(engine, search="ID-2")) == {"id-2"}
    assert set(_status(engine, machines=["bob-desktop", "id-1"])) == {"id-1", "id-2"}
    assert _status(engine, machines=[]) == {}


def test_unchanged_facts_write_nothing(engine: Engine) -> None:
    _enrol(engine, "d1", "d1.corp")
    facts = {
        "hostname": "d1.corp", "os": "Debian GNU/Linux", "os_version": "12", "agent_version": "1.0",
        "user": "u", "local_ips": ["10.0.0.1"],
    }  # fmt: skip
    assert update_facts(engine, "d1", **facts, now=NOW)  # type: ignore[arg-type]
    assert not update_facts(engine, "d1", **facts, now=NOW + TEN_MINUTES)  # type: ignore[arg-type]
    device = _status(engine)["d1"].device  # type: ignore[attr-defined]
    assert device.identity_updated_at == NOW and device.os_version == "12"


# --- over HTTP --------------------------------------------------------------------------------


def test_a_device_reports_its_facts_and_admins_read_them(api: Api) -> None:
    token = api.enroll("laptop-1")
    facts = {
        "hostname": "laptop-1b.corp.example",
        "os": "Debian GNU/Linux",
        "osVersion": "12 (bookworm), kernel 6.1.0",
        "agentVersion": "0.9.0",
        "user": "alice",
        "localIps": ["10.0.0.9", "2001:db8::9"],
    }
    response = api.client.put("/api/v1/devices/self", json=facts, headers=bearer(token))
    assert response.status_code == 204, response.text
    listed = api.client.get("/api/v1/devices", headers=api.admin, params={"q": "1B.corp"})
    device = listed.json()["value"][0]
    assert listed.json()["count"] == 1
    assert {k: device[k] for k in facts} == facts
    assert device["identityUpdatedAt"] is not None and device["appliedRevision"] is None


def test_device_facts_are_validated_and_need_a_device_token(api: Api) -> None:
    token = api.enroll("laptop-1")
    too_long = api.client.put(
        "/api/v1/devices/self", json={"hostname": "h" * 256}, headers=bearer(token)
    )
    assert too_long.status_code == 422 and "hostname" in too_long.text
    as_admin = api.client.put("/api/v1/devices/self", json={}, headers=api.admin)
    assert as_admin.status_code == 403
    assert api.client.put("/api/v1/devices/self", json={}).status_code == 401


def test_the_sync_request_records_the_applied_revision(api: Api) -> None:
    revision = apply_indicators(api.engine, [block("a.example")])
    token = api.enroll("laptop-1")
    api.enroll("laptop-2")
    assert api.client.get("/api/v1/sync", headers=bearer(token)).status_code == 200
    synced = api.client.get("/api/v1/sync", params={"since": revision}, headers=bearer(token))
    assert synced.status_code == 200
    body = api.client.get("/api/v1/devices", headers=api.admin).json()
    by_id = {d["deviceId"]: d for d in body["value"]}
    one = by_id["laptop-1"]
    assert one["appliedRevision"] == revision and one["behindSince"] is None
    assert one["appliedAt"] is not None and 0 <= one["timeToEnforce"] < 60
    assert not one["stale"]
    assert by_id["laptop-2"]["appliedRevision"] is None and by_id["laptop-2"]["behindSince"]
    stale = api.client.get("/api/v1/devices", headers=api.admin, params={"stale": "true"})
    assert stale.json() == {"value": [], "count": 0}, "behind for less than stale_after"


def test_a_revision_the_store_never_issued_is_not_recorded(api: Api) -> None:
    """A device naming a revision beyond the store's (a restored store, or a device that lies)
    gets a snapshot and is not recorded as up to date; one beyond 64 bits is refused."""
    revision = apply_indicators(api.engine, [block("a.example")])
    token = api.enroll("laptop-1")
    ahead = api.client.get("/api/v1/sync", params={"since": revision + 5}, headers=bearer(token))
    assert ahead.status_code == 200 and ahead.json()["revision"] == revision
    assert [i["indicatorValue"] for i in ahead.json()["upserts"]] == ["a.example"]
    body = api.client.get("/api/v1/devices", headers=api.admin).json()
    assert body["value"][0]["appliedRevision"] is None
    huge = api.client.get("/api/v1/sync", params={"since": 1 << 64}, headers=bearer(token))
    assert huge.status_code == 422
