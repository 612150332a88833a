"""A device's traffic joins the log machine of its hostname only when the server trusts the
device; machines are searchable by hostname, address and user and show their addresses and
sources. On both back ends."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Engine

from enforcer.catalog import Catalog
from enforcer.discovery import reports
from enforcer.discovery.aggregate import Aggregator
from enforcer.discovery.attribute import Attributor
from enforcer.discovery.continuous import process_events
from enforcer.discovery.records import Record
from enforcer.store.devices import enroll_device
from enforcer.store.events import EventRecord, store_batch
from enforcer.store.rollups import merge_rollup
from enforcer.store.trust import approve_device, record_enrolment_trust, trust_of

STALE = dt.timedelta(minutes=10)


def _log_lines(engine: Engine, catalog: Catalog, now: dt.datetime, n: int = 5) -> None:
    """The firewall's history of pc-07 (its address 10.0.0.7, user CONTOSO\\carol)."""
    aggregator = Aggregator(Attributor(catalog))
    aggregator.add_all(
        Record(time=now.timestamp() - i, host="boxy.example", src_ip="10.0.0.7",
               user="CONTOSO\\carol", device="pc-07", bytes_up=100, bytes_down=100)
        for i in range(n)
    )  # fmt: skip
    merge_rollup(engine, aggregator.rollup())


def _events(engine: Engine, device_id: str, batch: str, now: dt.datetime, n: int = 3) -> None:
    events = [
        EventRecord(now, "pc-07", "mallory", "10.9.9.9", "boxy.example", "", 443, 1, 1,
                    "allowed", "", "boxy", "dns")
        for _ in range(n)
    ]  # fmt: skip
    store_batch(engine, device_id=device_id, batch_id=batch, events=events)


def _enrol(engine: Engine, device_id: str, *, group_secret: bool) -> None:
    enroll_device(
        engine, device_id=device_id, hostname="pc-07", os="Linux", user="mallory",
        local_ips=("10.9.9.9",), groups=(),
    )  # fmt: skip
    record_enrolment_trust(engine, device_id, group_secret=group_secret)


def _machines(engine: Engine, catalog: Catalog, **kw: str) -> dict[str, dict[str, object]]:
    first, last = reports.day_range(1)
    with engine.connect() as conn:
        rows = reports.machines_report(conn, catalog, first, last, stale_after=STALE, **kw)
    return {str(r["device"]): r for r in rows}


def _machine(engine: Engine, catalog: Catalog, name: str) -> dict[str, object]:
    first, last = reports.day_range(1)
    with engine.connect() as conn:
        return reports.machine_report(conn, catalog, name, first, last, stale_after=STALE)


@pytest.fixture
def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def test_an_untrusted_device_cannot_take_over_a_log_machine(
    engine: Engine, catalog: Catalog, now: dt.datetime
) -> None:
    _log_lines(engine, catalog, now)
    _enrol(engine, "rogue-1", group_secret=False)  # the shared enrolment secret only
    _events(engine, "rogue-1", "b1", now)
    process_events(engine, catalog)
    rows = _machines(engine, catalog)
    assert sorted(rows) == ["pc-07", "pc-07 (device rogue-1)"]
    assert rows["pc-07"]["transactions"] == 5 and rows["pc-07"]["lastUser"] == "carol"
    assert rows["pc-07"]["os"] == "", "the rogue device is not shown as pc-07's enrolled device"
    logs = _machine(engine, catalog, "pc-07")
    assert logs["enrolledDevices"] == []
    assert [s["source"] for s in logs["sources"]] == ["logs"]  # type: ignore[attr-defined]
    rogue = _machine(engine, catalog, "pc-07 (device rogue-1)")
    assert [d["deviceId"] for d in rogue["enrolledDevices"]] == ["rogue-1"]  # type: ignore[attr-defined]
    assert rogue["sources"] == [
        {"source": "device rogue-1", "trustedBy": "", "firstSeen": now.isoformat(),
         "lastSeen": now.isoformat()}
    ]  # fmt: skip


def test_a_trusted_device_is_one_machine_with_its_log_history(
    engine: Engine, catalog: Catalog, now: dt.datetime
) -> None:
    _log_lines(engine, catalog, now)
    _enrol(engine, "pc07-shim", group_secret=True)
    _events(engine, "pc07-shim", "b1", now)
    process_events(engine, catalog)
    rows = _machines(engine, catalog)
    assert list(rows) == ["pc-07"] and rows["pc-07"]["transactions"] == 5 + 3
    machine = _machine(engine, catalog, "pc-07")
    assert [d["deviceId"] for d in machine["enrolledDevices"]] == ["pc07-shim"]  # type: ignore[attr-defined]
    sources = {s["source"]: s["trustedBy"] for s in machine["sources"]}  # type: ignore[attr-defined]
    assert sources == {"device pc07-shim": "group-secret", "logs": None}


def test_an_admin_approval_joins_the_next_events_and_stands_over_re_enrolment(
    engine: Engine, catalog: Catalog, now: dt.datetime
) -> None:
    _log_lines(engine, catalog, now)
    _enrol(engine, "dev-7", group_secret=False)
    _events(engine, "dev-7", "b1", now)
    process_events(engine, catalog)
    assert approve_device(engine, "dev-7") and not approve_device(engine, "nobody")
    _enrol(engine, "dev-7", group_secret=False)  # re-enrolment keeps an admin's approval
    with engine.connect() as conn:
        assert trust_of(conn, ["dev-7"]) == {"dev-7": ("pc-07", "admin")}
    _events(engine, "dev-7", "b2", now, n=2)
    process_events(engine, catalog)
    rows = _machines(engine, catalog)
    assert rows["pc-07"]["transactions"] == 5 + 2
    assert rows["pc-07 (device dev-7)"]["transactions"] == 3, "rolled up before the approval"
    # A group-secret trust does not survive a re-enrolment with the shared secret.
    _enrol(engine, "dev-8", group_secret=True)
    _enrol(engine, "dev-8", group_secret=False)
    with engine.connect() as conn:
        assert trust_of(conn, ["dev-8"])["dev-8"][1] == ""


def test_machines_are_found_by_hostname_address_and_user_and_show_their_addresses(
    engine: Engine, catalog: Catalog, now: dt.datetime
) -> None:
    _log_lines(engine, catalog, now)
    aggregator = Aggregator(Attributor(catalog))
    aggregator.add_all(
        [Record(time=now.timestamp(), host="boxy.example", src_ip="10.0.0.8", user="dave",
                device="pc-08")]
    )  # fmt: skip
    merge_rollup(engine, aggregator.rollup())
    assert _machines(engine, catalog)["pc-07"]["ips"] == ["10.0.0.7"]
    assert list(_machines(engine, catalog, search="PC-07")) == ["pc-07"]
    assert list(_machines(engine, catalog, search="10.0.0.8")) == ["pc-08"]
    assert list(_machines(engine, catalog, search="carol")) == ["pc-07"]
    assert list(_machines(engine, catalog, search="carol@contoso.com")) == ["pc-07"]
    assert list(_machines(engine, catalog, search="10.0.0.")) == ["pc-07", "pc-08"]
    assert _machines(engine, catalog, search="nobody") == {}
    first, last = reports.day_range(1)
    with engine.connect() as conn:
        assert reports.machine_count(conn, first, last, search="10.0.0.8") == 1
