"""The Timeline tab of a machine page: the machine's raw network events, newest first, with
their CSV export; only that machine's."""

from __future__ import annotations

import csv
import datetime as dt
import io

from enforcer.store.devices import enroll_device
from enforcer.store.events import EventRecord, store_batch
from enforcer.store.trust import approve_device
from tests.console.conftest import Console
from tests.console.test_access import session_cookie, sign_in


def _event(minutes_ago: int, domain: str, hostname: str, user: str = "alice") -> EventRecord:
    return EventRecord(
        time=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes_ago), hostname=hostname,
        user=user, local_ip="10.0.0.9", domain=domain, dest_ip="203.0.113.9", dest_port=443,
        bytes_up=10, bytes_down=20, action="blocked", indicator=domain, app_id="", source="proxy",
        process_name="firefox",
    )  # fmt: skip


def test_the_timeline_lists_the_machines_events_newest_first(console: Console) -> None:
    for device, host in (("dev-a", "pc-01"), ("dev-b", "pc-02")):
        enroll_device(
            console.engine, device_id=device, hostname=host, os="Linux", user="alice",
            local_ips=[], groups=[],
        )  # fmt: skip
        approve_device(console.engine, device)  # its machine is its hostname
        events = [_event(5, f"old.{host}.example", host), _event(1, f"new.{host}.example", host)]
        store_batch(console.engine, device_id=device, batch_id="b", events=events)
    with console.client() as client:
        cookie = session_cookie(sign_in(client))
        page = client.get("/console/machines/pc-01?tab=timeline", headers=cookie)
        assert page.status_code == 200
        assert "Timeline" in page.text and "new.pc-01.example" in page.text
        assert "pc-02.example" not in page.text
        exported = client.get("/console/machines/pc-01?tab=timeline&format=csv", headers=cookie)
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [r["domain"] for r in rows] == ["new.pc-01.example", "old.pc-01.example"]
    assert rows[0]["process"] == "firefox" and rows[0]["destination"] == "203.0.113.9:443"


def test_the_timeline_names_users_as_the_reports_do_with_the_form_sent(console: Console) -> None:
    enroll_device(
        console.engine, device_id="dev-a", hostname="pc-01", os="Linux", user="alice",
        local_ips=[], groups=[],
    )  # fmt: skip
    approve_device(console.engine, "dev-a")
    events = [_event(2, "a.example", "pc-01", "CONTOSO\\Alice"), _event(1, "b.example", "pc-01")]
    store_batch(console.engine, device_id="dev-a", batch_id="b", events=events)
    with console.client() as client:
        cookie = session_cookie(sign_in(client))
        page = client.get("/console/machines/pc-01?tab=timeline", headers=cookie)
        exported = client.get("/console/machines/pc-01?tab=timeline&format=csv", headers=cookie)
    assert page.status_code == 200 and "/console/users/alice" in page.text
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [(r["domain"], r["user"], r["seen_as"]) for r in rows] == [
        ("b.example", "alice", ""), ("a.example", "alice", "CONTOSO\\Alice"),
    ]  # fmt: skip
